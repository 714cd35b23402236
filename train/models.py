"""The networks: the paper's MLP, CNN and STN (Appendix A), xpstream's shift-supervised STN and
its per-region variant.

Every model takes grid spectra (N, 6601) of any positive scale and the measured-region mask
(N, 6601; None = the whole grid), normalises the spectra to unit area inside `forward` (so the
exported graph does too) and returns a `ModelOutput`: label logits (N, 32), shift_ev (N,) and,
for models with a composition head, group-share logits and log-scales (N, 32 each). Models
without a shift estimate return zeros for it; only the acquisition-aware models read the mask.

`Acquisition` computes from the mask what the exported graph reports beside the model
(per-label determinability, the out-of-library score, each core level's share of the area);
`xpstream.train.export.Deployed` wraps a trained model into that graph.

The STN's warp is a 1D linear interpolation (index arithmetic, gather, lerp, zero outside),
which equals the paper's affine_grid + grid_sample on a 1 x L image (tests check it to 1e-5)
and exports to plain ONNX Gather ops.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from xpstream.contract import GRID_SIZE, GRID_START_EV, GRID_STEP_EV, NUM_LABELS
from xpstream.train.acquisition import (
    EXPLAINED_SHIFT_EV,
    LEVELS,
    RECORDED_COVERAGE,
    coverage_matrix,
    determination_maps,
    explained_mask,
    level_area_matrix,
)
from xpstream.train.library import load_library

SHARE_LOG_SCALE_MIN = -9.0  # log of the smallest spread a group share may claim (about 1e-4)


class ModelOutput(NamedTuple):
    """What a model returns: label logits (N, 32), the shift in eV (N,), and for models with a
    composition head the group-share logits (softmax over the 32 groups) and the log of each
    share's error scale (N, 32 each), else None."""

    logits: torch.Tensor
    shift_ev: torch.Tensor
    share_logits: torch.Tensor | None = None
    share_log_scale: torch.Tensor | None = None


def normalise(spectra: torch.Tensor) -> torch.Tensor:
    """Clip negatives and scale rows to unit sum (all-zero rows stay zero)."""
    spectra = F.relu(spectra)
    return spectra / spectra.sum(dim=1, keepdim=True).clamp_min(1e-12)


def shift_warp(spectra: torch.Tensor, shift_samples: torch.Tensor) -> torch.Tensor:
    """out[n, i] = spectra[n, i + shift_samples[n]], linearly interpolated, zero outside.

    A spectrum whose peaks sit `s` samples too high is aligned by warping with +s."""
    return shifted_samples(spectra, torch.arange(spectra.shape[1], device=spectra.device), shift_samples)


def shifted_samples(spectra: torch.Tensor, index: torch.Tensor, shift_samples: torch.Tensor) -> torch.Tensor:
    """out[n, k] = spectra[n, index[k] + shift_samples[n]], linearly interpolated, zero outside:
    `shift_warp` followed by picking `index`, reading only those points.

    The shift is one number per spectrum, so the integer part moves the index (one gather per
    neighbour) and the fractional part blends the two neighbours (one lerp)."""
    length = spectra.shape[1]
    whole = torch.floor(shift_samples)
    frac = (shift_samples - whole)[:, None]
    left_index = index[None, :] + whole.long()[:, None]

    def at(positions):
        inside = ((positions >= 0) & (positions < length)).to(spectra.dtype)
        return torch.gather(spectra, 1, positions.clamp(0, length - 1)) * inside

    left, right = at(left_index), at(left_index + 1)
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
        return ModelOutput(self.classifier(x), x.new_zeros(x.shape[0]))


class CNN(nn.Module):
    """Appendix A CNN: Conv1d(1 -> 16, kernel 35) + BN + LeakyReLU, flattened into the MLP."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(1, 16, 35, padding=17), nn.BatchNorm1d(16), nn.LeakyReLU(0.01))
        self.classifier = Backbone(16 * GRID_SIZE)

    def forward(self, spectra, measured=None):
        x = normalise(spectra)
        return ModelOutput(self.classifier(self.features(x[:, None, :]).flatten(1)), x.new_zeros(x.shape[0]))


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
        return ModelOutput(self.classifier(aligned), torch.zeros_like(t))


class ShareHead(nn.Module):
    """The composition head: from the classifier's last hidden features, group-share logits and
    the log of each share's error scale (32 each)."""

    def __init__(self, n_in: int):
        super().__init__()
        self.linear = nn.Linear(n_in, 2 * NUM_LABELS)

    def forward(self, hidden):
        logits, log_scale = self.linear(hidden).chunk(2, dim=1)
        return logits, log_scale.clamp_min(SHARE_LOG_SCALE_MIN)


def classify(classifier: nn.Sequential, shares: ShareHead | None, features, shift_ev) -> ModelOutput:
    """Run a Backbone whose last layer gives the label logits; the share head, when there is
    one, reads the features before that layer."""
    hidden = features
    for layer in list(classifier)[:-1]:
        hidden = layer(hidden)
    share_logits, share_log_scale = shares(hidden) if shares is not None else (None, None)
    return ModelOutput(classifier[-1](hidden), shift_ev, share_logits, share_log_scale)


class Localisation(nn.Sequential):
    """The paper's localisation layers (6601 -> 64 -> 32 -> 1), whose output is the shift in eV.

    pool > 1: the first layer reads the spectrum averaged over `pool` grid points (a quarter of
    the cost at pool 4); `pool_state` turns a full-grid net's weights into that form."""

    def __init__(self, pool: int = 1):
        inputs = -(-GRID_SIZE // pool)
        super().__init__(nn.Flatten(), nn.Linear(inputs, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))
        self.pool = pool

    def pooled(self, x):
        """Unit-area spectra (N, L) averaged over `pool` grid points (unchanged at pool 1)."""
        if self.pool == 1:
            return x
        return F.avg_pool1d(x[:, None, :], self.pool, ceil_mode=True)[:, 0, :]

    def read(self, pooled):
        """The shift in eV (N,) of pooled unit-area spectra; x100 brings their ~1e-2 values to O(1)."""
        return self(pooled[:, None, :] * 100.0)[:, 0]

    def pool_state(self, state: dict, prefix: str) -> None:
        """In `state` (a state dict), replace a full-grid first-layer weight under `prefix` by its
        sums over this net's pooled points: on a spectrum that varies little within `pool`
        points the pooled net computes what the full-grid one did."""
        key = f"{prefix}1.weight"
        weight = state.get(key)
        if self.pool == 1 or weight is None or weight.shape[1] != GRID_SIZE:
            return
        padded = F.pad(weight, (0, (-GRID_SIZE) % self.pool))
        state[key] = padded.reshape(weight.shape[0], -1, self.pool).sum(dim=2)

    def estimate(self, x, passes: int = 1):
        """The shift in eV (N,) of unit-area spectra x.

        passes > 1: each further pass reads the shift left in the (pooled) spectrum aligned so
        far and adds it, so the estimate settles where the aligned spectrum looks unshifted to
        the net - the same place wherever charging put the spectrum (one pass is least accurate
        far from zero)."""
        pooled = self.pooled(x)
        shift_ev = self.read(pooled)
        for _ in range(passes - 1):
            shift_ev = shift_ev + self.read(shift_warp(pooled, shift_ev / (GRID_STEP_EV * self.pool)))
        return shift_ev


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
    shares: a composition head (group shares and their spread, contract version 3).
    """

    calibrated_shift = True

    def __init__(
        self,
        localisation: str = "mlp",
        sqrt_input: bool = True,
        acquisition_input: bool = False,
        hidden: tuple[int, int] = (256, 128),
        shares: bool = False,
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
            self.localisation = Localisation()
        else:
            raise ValueError(f"localisation must be 'conv' or 'mlp', got {localisation!r}")
        self.classifier = Backbone(GRID_SIZE + (len(LEVELS) if acquisition_input else 0), hidden)
        self.shares = ShareHead(hidden[1]) if shares else None

    def forward(self, spectra, measured=None):
        x = normalise(spectra)
        # unit-area spectra have values ~1e-2; scale to O(1) for the localisation net
        shift_ev = self.localisation(x[:, None, :] * 100.0)[:, 0]
        aligned = shift_warp(x, shift_ev / GRID_STEP_EV)
        if self.sqrt_input:  # lifts minor components' peaks; variance-stabilises counting noise
            aligned = torch.sqrt(aligned.clamp_min(0) + 1e-8)
        if self.acquisition is not None:
            aligned = torch.cat([aligned, self.acquisition.recorded(measured, x)], dim=1)
        return classify(self.classifier, self.shares, aligned, shift_ev)


REGION_WINDOW_EV = 16.0  # the window each level's encoder reads, centred on the level's lines
REGION_CHANNELS = (16, 16, 32)


class RegionSTN(nn.Module):
    """The STN with per-region encoders: localise and align as `ShiftSTN`, then cut one window
    of REGION_WINDOW_EV around each core level's library lines out of the square root of the
    aligned spectrum, encode every window with the same small convolution stack (local line
    shapes, tolerant of a few tenths of an eV of scatter), project each level's features with
    its own linear map, and classify the levels' features with the recorded-levels vector.
    The windows keep the unit-area scale, so element ratios (O/C, N/C) still reach the classifier.

    align_passes: localisation passes (`Localisation.estimate`); localisation_pool: grid points
    the localisation net averages (1: the paper's full grid).
    """

    calibrated_shift = True

    def __init__(
        self,
        hidden: tuple[int, int] = (512, 256),
        level_features: int = 48,
        shares: bool = True,
        channels: tuple[int, int, int] = REGION_CHANNELS,
        align_passes: int = 1,
        localisation_pool: int = 1,
    ):
        super().__init__()
        self.align_passes = align_passes
        library = load_library()
        width = int(round(REGION_WINDOW_EV / GRID_STEP_EV))
        starts = []
        for level in LEVELS:
            lo, hi = library.level_extent_ev(level)
            start = int(round(((lo + hi) / 2 - REGION_WINDOW_EV / 2 - GRID_START_EV) / GRID_STEP_EV))
            starts.append(min(max(start, 0), GRID_SIZE - width))
        index = torch.tensor(starts)[:, None] + torch.arange(width)[None, :]
        self.register_buffer("window_index", index.reshape(-1), persistent=False)
        self.width = width
        self.localisation = Localisation(localisation_pool)
        self.acquisition = Acquisition()
        c1, c2, c3 = channels
        self.encoder = nn.Sequential(
            nn.Conv1d(1, c1, 7, padding=3),
            nn.LeakyReLU(0.01),
            nn.Conv1d(c1, c2, 5, stride=2, padding=2),
            nn.LeakyReLU(0.01),
            nn.Conv1d(c2, c3, 5, stride=2, padding=2),
            nn.LeakyReLU(0.01),
        )
        encoded = c3 * ((width + 3) // 4)
        self.level_weight = nn.Parameter(torch.randn(len(LEVELS), encoded, level_features) / encoded**0.5)
        self.level_bias = nn.Parameter(torch.zeros(len(LEVELS), level_features))
        self.classifier = Backbone(len(LEVELS) * (level_features + 1), hidden)
        self.shares = ShareHead(hidden[1]) if shares else None

    def forward(self, spectra, measured=None):
        x = normalise(spectra)
        shift_ev = self.localisation.estimate(x, self.align_passes)
        # only the windows are aligned: the warp reads the points they need
        aligned = shifted_samples(x, self.window_index, shift_ev / GRID_STEP_EV)
        # square root lifts minor lines and stabilises counting noise; x10 brings it near O(1)
        root = torch.sqrt(aligned.clamp_min(0) + 1e-8) * 10.0
        n, levels = x.shape[0], len(LEVELS)
        windows = root.reshape(n * levels, 1, self.width)
        encoded = self.encoder(windows).reshape(n, levels, -1)
        features = torch.einsum("nle,lef->nlf", encoded, self.level_weight) + self.level_bias
        recorded = self.acquisition.recorded(measured, x)
        features = torch.cat([F.leaky_relu(features, 0.01) * recorded[:, :, None], recorded[:, :, None]], dim=2)
        return classify(self.classifier, self.shares, features.flatten(1), shift_ev)


class Acquisition(nn.Module):
    """Fixed maps (buffers, not trained) from the mask and the unit-area spectrum:

    recorded (N, levels): 1 where at least RECORDED_COVERAGE of a level's lines were recorded;
    determined (N, 32): the share of a label's defining levels recorded, 0 when a required
    heteroatom level is missing or the label is not determinable (`acquisition.label_determined`);
    out_of_library_score (N,): the share of the spectrum's area where the library has no lines
    (`explained_mask`); level_area (N, levels): each level's share of the area, from its
    acquisition window (`level_area_matrix`; classical quantification starts from it).
    """

    def __init__(self):
        super().__init__()
        library = load_library()
        self.register_buffer("coverage", torch.from_numpy(coverage_matrix(library)))
        share, required, determinable = (torch.from_numpy(m) for m in determination_maps(library))
        self.register_buffer("defining_share", share)
        self.register_buffer("required", required)
        self.register_buffer("determinable", determinable)
        self.register_buffer("unexplained", torch.from_numpy(1.0 - explained_mask(library, EXPLAINED_SHIFT_EV)))
        self.register_buffer("level_windows", torch.from_numpy(level_area_matrix()))

    def recorded(self, measured, x):
        if measured is None:
            return x.new_ones(x.shape[0], len(LEVELS))
        return (measured @ self.coverage >= RECORDED_COVERAGE).to(x.dtype)

    def forward(self, x, measured):
        """(determined (N, 32), out_of_library_score (N,), recorded (N, L), level_area (N, L))
        for unit-area spectra x; `determined` follows `acquisition.label_determined`."""
        recorded = self.recorded(measured, x)
        complete = ((1.0 - recorded) @ self.required.T == 0).to(x.dtype)
        determined = (recorded @ self.defining_share.T) * complete * self.determinable
        return determined, (x * self.unexplained).sum(dim=1), recorded, x @ self.level_windows


ACQ_HIDDEN = (512, 256)
MODELS = {
    "mlp": MLP,
    "cnn": CNN,
    "stn": PaperSTN,
    "stn-shift": ShiftSTN,
    # reads the measured-region mask; twice the classifier width for the harder mix of acquisitions
    "stn-acq": lambda: ShiftSTN(acquisition_input=True, hidden=ACQ_HIDDEN),
    # the same with a composition head (contract version 3)
    "stn-acq-shares": lambda: ShiftSTN(acquisition_input=True, hidden=ACQ_HIDDEN, shares=True),
    # per-region convolutional encoders after the alignment, with a composition head
    "stn-region": RegionSTN,
    # the same with half the encoder channels: 1.5x faster in onnxruntime on CPU
    "stn-region-lite": lambda: RegionSTN(channels=(8, 8, 16)),
    # the same aligning in two passes of a localisation net that reads 0.4 eV bins: called
    # groups barely move with the charging shift, at less localisation cost than one full pass
    "stn-region-lite-2pass": lambda: RegionSTN(channels=(8, 8, 16), align_passes=2, localisation_pool=4),
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
