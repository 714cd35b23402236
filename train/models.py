"""The networks: the paper's MLP, CNN and STN (Appendix A) and xpstream's shift-supervised STN.

Every model takes grid spectra (N, 6601) of any positive scale and the measured-region mask
(N, 6601; None = the whole grid), normalises the spectra to unit area inside `forward` (so the
exported graph does too) and returns (logits (N, 32), shift_ev (N,)). Models without a shift
estimate return zeros for it; only the acquisition-aware STN reads the mask.

`Deployed` wraps a trained model into what the exported graph computes: calibrated
probabilities, the shift, per-label determinability from the mask, and the out-of-library
score (`Acquisition`).

The STN's warp is a 1D linear interpolation (index arithmetic, gather, lerp, zero outside),
which equals the paper's affine_grid + grid_sample on a 1 x L image (tests check it to 1e-5)
and exports to plain ONNX Gather ops.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from xpstream.contract import GRID_SIZE, GRID_STEP_EV, NUM_LABELS
from xpstream.train.acquisition import (
    EXPLAINED_SHIFT_EV,
    LEVELS,
    RECORDED_COVERAGE,
    coverage_matrix,
    explained_mask,
)
from xpstream.train.library import load_library


def normalise(spectra: torch.Tensor) -> torch.Tensor:
    """Clip negatives and scale rows to unit sum (all-zero rows stay zero)."""
    spectra = F.relu(spectra)
    return spectra / spectra.sum(dim=1, keepdim=True).clamp_min(1e-12)


WARP_GUARD = 512  # zero padding on each side, in samples: shifts up to +-51 eV stay exact


def shift_warp(spectra: torch.Tensor, shift_samples: torch.Tensor) -> torch.Tensor:
    """out[n, i] = spectra[n, i + shift_samples[n]], linearly interpolated, zero outside.

    A spectrum whose peaks sit `s` samples too high is aligned by warping with +s. The shift is
    one number per spectrum, so the integer part picks a window of the zero-padded spectrum
    (one gather) and the fractional part blends it with its neighbour (one lerp).
    """
    n, length = spectra.shape
    shift = shift_samples.clamp(-(WARP_GUARD - 2), WARP_GUARD - 2)
    whole = torch.floor(shift)
    frac = (shift - whole)[:, None]
    padded = F.pad(spectra, (WARP_GUARD, WARP_GUARD))
    index = torch.arange(length + 1, device=spectra.device)[None, :] + (whole.long() + WARP_GUARD)[:, None]
    window = torch.gather(padded, 1, index)
    left, right = window[:, :-1], window[:, 1:]
    return left + frac * (right - left)


def paper_grid_sample_warp(spectra: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The paper's warp: affine_grid + grid_sample of the spectrum as a 1 x L image, theta =
    [[1, 0, t], [0, 1, 0]] in normalised coordinates (align_corners=False, zero padding)."""
    n, length = spectra.shape
    theta = torch.zeros(n, 2, 3, dtype=spectra.dtype, device=spectra.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = t
    grid = F.affine_grid(theta, [n, 1, 1, length], align_corners=False)
    return F.grid_sample(spectra[:, None, None, :], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[
        :, 0, 0, :
    ]


def normalised_to_samples(t: torch.Tensor, length: int = GRID_SIZE) -> torch.Tensor:
    """A translation in grid_sample's normalised coordinates as a shift in samples."""
    return t * length / 2


class Backbone(nn.Sequential):
    """Appendix A classifier: in -> 256 -> 128 -> 32 with BatchNorm, LeakyReLU(0.01), Dropout 0.1
    (other hidden sizes for the acquisition-aware model)."""

    def __init__(self, n_in: int = GRID_SIZE, hidden: tuple[int, int] = (256, 128)):
        wide, narrow = hidden
        super().__init__(
            nn.Linear(n_in, wide),
            nn.BatchNorm1d(wide),
            nn.LeakyReLU(0.01),
            nn.Dropout(0.1),
            nn.Linear(wide, narrow),
            nn.BatchNorm1d(narrow),
            nn.LeakyReLU(0.01),
            nn.Dropout(0.1),
            nn.Linear(narrow, NUM_LABELS),
        )


class MLP(nn.Module):
    """Appendix A MLP (other hidden sizes: the matrix-multiply ceiling of a wider model)."""

    def __init__(self, hidden: tuple[int, int] = (256, 128)):
        super().__init__()
        self.classifier = Backbone(hidden=hidden)

    def forward(self, spectra, measured=None):
        x = normalise(spectra)
        return self.classifier(x), x.new_zeros(x.shape[0])


class CNN(nn.Module):
    """Appendix A CNN: Conv1d(1 -> 16, kernel 35) + BN + LeakyReLU, flattened into the MLP."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(1, 16, 35, padding=17), nn.BatchNorm1d(16), nn.LeakyReLU(0.01))
        self.classifier = Backbone(16 * GRID_SIZE)

    def forward(self, spectra, measured=None):
        x = normalise(spectra)
        return self.classifier(self.features(x[:, None, :]).flatten(1)), x.new_zeros(x.shape[0])


class PaperSTN(nn.Module):
    """Appendix A STN: MLP localisation net (6601 -> 64 -> 32 -> 1, last layer zero) giving a
    translation t in normalised coordinates; warp; the MLP. `grid_sample=True` uses the
    paper's 2D affine_grid/grid_sample (for the speed comparison), else the 1D warp; `hidden`:
    the classifier's sizes (the speed comparison at the shipped model's sizes)."""

    def __init__(self, grid_sample: bool = False, hidden: tuple[int, int] = (256, 128)):
        super().__init__()
        self.localisation = nn.Sequential(
            nn.Linear(GRID_SIZE, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)
        )
        nn.init.zeros_(self.localisation[-1].weight)
        nn.init.zeros_(self.localisation[-1].bias)
        self.classifier = Backbone(hidden=hidden)
        self.grid_sample = grid_sample

    def forward(self, spectra, measured=None):
        x = normalise(spectra)
        t = self.localisation(x)[:, 0]
        aligned = paper_grid_sample_warp(x, t) if self.grid_sample else shift_warp(x, normalised_to_samples(t))
        # t lives in an arbitrary internal frame: no calibrated shift to report
        return self.classifier(aligned), torch.zeros_like(t)


class ShiftSTN(nn.Module):
    """xpstream's STN: the localisation net predicts the charging shift in eV and is trained
    against the known synthetic shift, so shift_ev is calibrated and the spectrum is aligned to
    the library's energy scale before the Appendix A classifier.

    localisation="mlp": the paper's localisation layers (6601 -> 64 -> 32 -> 1) (default; half
    the onnxruntime cost of the convolutional one at the same shift error);
    localisation="conv": average-pool by 2, two strided convolutions, then 64 -> 1 (ablation).
    sqrt_input: the classifier sees the square root of the aligned spectrum (ablation: linear).
    acquisition_input: the classifier also sees which core-level regions the mask records, so
    "not measured" and "measured, nothing there" differ (contract version 2).
    hidden: the classifier's hidden sizes (Appendix A: 256, 128).
    """

    def __init__(
        self,
        localisation: str = "mlp",
        sqrt_input: bool = True,
        acquisition_input: bool = False,
        hidden: tuple[int, int] = (256, 128),
    ):
        super().__init__()
        self.sqrt_input = sqrt_input
        self.acquisition = Acquisition() if acquisition_input else None
        if localisation == "conv":
            self.localisation = nn.Sequential(
                nn.AvgPool1d(2),  # 6601 -> 3300
                nn.Conv1d(1, 8, 9, stride=2, padding=4),  # -> 1650
                nn.ReLU(),
                nn.Conv1d(8, 16, 9, stride=4, padding=4),  # -> 413
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(16 * 413, 64),
                nn.ReLU(),
                nn.Linear(64, 1),
            )
        elif localisation == "mlp":
            self.localisation = nn.Sequential(
                nn.Flatten(), nn.Linear(GRID_SIZE, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)
            )
        else:
            raise ValueError(f"localisation must be 'conv' or 'mlp', got {localisation!r}")
        self.classifier = Backbone(GRID_SIZE + (len(LEVELS) if acquisition_input else 0), hidden)

    def forward(self, spectra, measured=None):
        x = normalise(spectra)
        # unit-area spectra have values ~1e-2; scale to O(1) for the localisation net
        shift_ev = self.localisation(x[:, None, :] * 100.0)[:, 0]
        aligned = shift_warp(x, shift_ev / GRID_STEP_EV)
        if self.sqrt_input:  # lifts minor components' peaks; variance-stabilises counting noise
            aligned = torch.sqrt(aligned.clamp_min(0) + 1e-8)
        if self.acquisition is not None:
            aligned = torch.cat([aligned, self.acquisition.recorded(measured, x)], dim=1)
        return self.classifier(aligned), shift_ev


class Acquisition(nn.Module):
    """Fixed maps (buffers, not trained) from the mask and the unit-area spectrum:

    recorded (N, levels): 1 where at least RECORDED_COVERAGE of a level's lines were recorded;
    determined (N, 32): the share of a label's defining levels recorded (0 = nothing measured
    could show it); out_of_library_score (N,): the share of the spectrum's area where the
    library has no lines (`explained_mask`).
    """

    def __init__(self):
        super().__init__()
        library = load_library()
        self.register_buffer("coverage", torch.from_numpy(coverage_matrix(library)))
        defining = library.label_levels(LEVELS).astype("float32")
        self.register_buffer("defining_share", torch.from_numpy(defining / defining.sum(axis=1, keepdims=True)))
        self.register_buffer("unexplained", torch.from_numpy(1.0 - explained_mask(library, EXPLAINED_SHIFT_EV)))

    def recorded(self, measured, x):
        if measured is None:
            return x.new_ones(x.shape[0], len(LEVELS))
        return (measured @ self.coverage >= RECORDED_COVERAGE).to(x.dtype)

    def forward(self, x, measured):
        """(determined (N, 32), out_of_library_score (N,)) for unit-area spectra x."""
        determined = self.recorded(measured, x) @ self.defining_share.T
        return determined, (x * self.unexplained).sum(dim=1)


class Deployed(nn.Module):
    """What the exported graph computes from (spectra, measured): probabilities (N, 32) with
    per-label temperature calibration and 0.5 (no evidence) where `determined` is 0, shift_ev
    (N,), determined (N, 32) and out_of_library_score (N,)."""

    def __init__(self, model: nn.Module, temperature=None):
        super().__init__()
        self.model = model
        # the model's own maps when it reads the mask: one set of buffers in the graph, so
        # onnxruntime merges the repeated mask -> levels product instead of computing it twice
        self.acquisition = getattr(model, "acquisition", None) or Acquisition()
        t = torch.ones(NUM_LABELS) if temperature is None else torch.as_tensor(temperature, dtype=torch.float32)
        self.register_buffer("temperature", t.clone())

    def forward(self, spectra, measured):
        logits, shift_ev = self.model(spectra, measured)
        determined, score = self.acquisition(normalise(spectra), measured)
        probs = torch.sigmoid(logits / self.temperature)
        probs = torch.where(determined > 0, probs, torch.full_like(probs, 0.5))
        return probs, shift_ev, determined, score


ACQ_HIDDEN = (512, 256)
MODELS = {
    "mlp": MLP,
    "cnn": CNN,
    "stn": PaperSTN,
    "stn-shift": ShiftSTN,
    # reads the measured-region mask; twice the classifier width for the harder mix of acquisitions
    "stn-acq": lambda: ShiftSTN(acquisition_input=True, hidden=ACQ_HIDDEN),
    "stn-acq-narrow": lambda: ShiftSTN(acquisition_input=True),  # ablation: Appendix A width
    # ablations of stn-shift
    "stn-shift-convloc": lambda: ShiftSTN(localisation="conv"),
    "stn-shift-linear": lambda: ShiftSTN(sqrt_input=False),
}


def build_model(name: str) -> nn.Module:
    """A fresh model by name (see MODELS)."""
    try:
        return MODELS[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None
