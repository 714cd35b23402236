"""Training: fresh synthetic mixtures every epoch, AdamW + one-cycle schedule, BCE (+ shift loss),
early stopping on validation exact match with a real copy of the best weights, checkpoints and
resume. CPU by default, CUDA when present.

A run directory holds `config.json`, `checkpoint.pt` (latest, for --resume), `best.pt` (best
weights, tuned thresholds, history) and `history.json`.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from xpstream.contract import MODEL_OUTPUTS, NUM_LABELS, labels_to_multihot
from xpstream.train.acquisition import label_determined
from xpstream.train.export import Deployed, model_weights, read_exported, weights_from_onnx
from xpstream.train.library import load_library
from xpstream.train.metrics import exact_match, tune_thresholds
from xpstream.train.mixtures import Batch, MixtureGenerator, MixtureSettings
from xpstream.train.models import MODELS, Acquisition, Localisation, ModelOutput, build_model, normalise
from xpstream.train.settings import option

VALIDATION_SEED_OFFSET = 1_000_003  # validation data never share a seed with training data
OUT_OF_LIBRARY_FALSE_ALARM = 0.002  # share of validation (library) spectra the flag may raise
OUT_OF_LIBRARY_FLOOR = 0.05  # the out-of-library threshold never goes below this share of area
HEADLINE_EXCLUDED = ("alkane",)  # scored on its own: adventitious carbon makes it a weaker claim
SHARE_COVERAGE = 0.683  # +-1 spread of a group share holds the truth this often (validation)
SPREAD_LOSS_WEIGHT = 0.1  # the error-scale likelihood beside the share error


@dataclass
class TrainConfig:
    """One training run (stored in RUN/config.json and in the exported model)."""

    model: str = option("stn-shift", "architecture (see `xpstream.train.models.MODELS`)", choices=tuple(MODELS))
    out: str = option("", "run directory (default runs/MODEL)")
    mixtures: MixtureSettings = field(default_factory=lambda: MixtureSettings(max_shift_ev=5.0))
    train_size: int = option(100_000, "fresh spectra per epoch")
    val_size: int = option(10_000, "validation spectra (their own seed)")
    epochs: int = option(30, "epochs")
    batch_size: int = option(256, "spectra per optimiser step")
    lr: float = option(2e-3, "peak learning rate of the one-cycle schedule")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    shift_loss_weight: float = option(1.0, "weight of SmoothL1(shift_ev), for models that report a shift")
    fraction_loss_weight: float = option(1.0, "weight of the group-share loss, for models that report shares")
    label_weighting: bool = option(False, "BCE pos_weight from label frequencies")
    patience: int = option(6, "epochs without improvement before stopping")
    init_from: str = option("", "start from the weights of this best.pt or .onnx (layers that grew: the old part)")
    seed: int = option(0, "seed of the training data (validation: seed + 1000003)")
    device: str = option("auto", "auto (CUDA when present), cpu or cuda")
    threads: int = option(0, "torch CPU threads (0: torch's default)")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        return cls(**{**data, "mixtures": MixtureSettings.from_dict(data["mixtures"])})


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_tensors(batch: Batch, device):
    """(spectra, masks, labels, shifts, not-ambiguous, group fractions) as tensors."""
    arrays = (
        batch.spectra,
        batch.measured(),
        batch.labels.astype(np.float32),
        batch.shift_ev,
        1.0 - batch.ambiguous.astype(np.float32),
        batch.group_fraction,
    )
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


def scored_entries(batch: Batch, determined: np.ndarray) -> np.ndarray:
    """(N, 32) bool: the labels each spectrum is judged on - its recorded regions can settle
    them and they are not traces (`Batch.ambiguous`)."""
    return (determined > 0) & ~batch.ambiguous.astype(bool)


def rule_scoring(library, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """(determined (N, 32) by today's rules from the batch's plans, scored entries): every model
    is judged by the same rules, whatever its own `determined` output says."""
    recorded = batch.recorded.astype(bool) | batch.whole.astype(bool)[:, None]
    determined = label_determined(library, recorded)
    return determined, scored_entries(batch, determined)


def headline(scored: np.ndarray) -> np.ndarray:
    """The scored entries without HEADLINE_EXCLUDED (alkane, reported on its own)."""
    return scored & ~labels_to_multihot(HEADLINE_EXCLUDED).astype(bool)[None, :]


def reports_shift(model) -> bool:
    """True for models whose shift_ev is trained against the true shift (eV)."""
    return getattr(model, "calibrated_shift", False)


def training_loss(out: ModelOutput, tensors, scored, config: TrainConfig, pos_weight=None):
    """BCE over the scored labels, SmoothL1 on the shift (models that report one), and for models
    with a composition head the total-variation distance between predicted and true group shares
    plus a Laplace likelihood of the shares' error scale (the scale learns |error|, detached)."""
    _, _, y, shift, _, fraction = tensors
    bce = F.binary_cross_entropy_with_logits(out.logits, y, pos_weight=pos_weight, reduction="none")
    loss = (bce * scored).sum() / scored.sum().clamp_min(1)
    if config.shift_loss_weight and out.shift_ev.requires_grad:
        loss = loss + config.shift_loss_weight * F.smooth_l1_loss(out.shift_ev, shift, beta=0.1)
    if out.share_logits is not None:
        error = (torch.softmax(out.share_logits, dim=1) - fraction).abs()
        spread = (out.share_log_scale + error.detach() / out.share_log_scale.exp()).mean()
        loss = loss + config.fraction_loss_weight * (0.5 * error.sum(dim=1).mean() + SPREAD_LOSS_WEIGHT * spread)
    return loss


def predict(model, batch: Batch, temperature=None, device=None, measured=None, share_scale=None) -> dict:
    """What the exported graph would say about a batch (see `Deployed`), plus the raw logits and
    share scales: numpy arrays keyed MODEL_OUTPUTS, logits, share_log_scale. The masks come from
    the batch's plans unless `measured` (N, GRID_SIZE) is given."""
    masks = measured if measured is not None else batch.measured()
    return predict_arrays(model, batch.spectra, masks, temperature, share_scale, device)


@torch.no_grad()
def predict_arrays(model, spectra, measured, temperature=None, share_scale=None, device=None, batch_size=1024) -> dict:
    """`predict` for arrays: spectra and masks (N, GRID_SIZE) float32."""
    device = device or next(model.parameters()).device
    deployed = Deployed(model, temperature, share_scale).to(device).eval()
    out = {k: [] for k in (*MODEL_OUTPUTS, "logits", "share_log_scale")}
    for start in range(0, len(spectra), batch_size):
        rows = slice(start, start + batch_size)
        x = torch.from_numpy(np.ascontiguousarray(spectra[rows], dtype=np.float32)).to(device)
        m = torch.from_numpy(np.ascontiguousarray(measured[rows], dtype=np.float32)).to(device)
        raw = model(x, m)
        log_scale = (
            raw.share_log_scale if raw.share_log_scale is not None else torch.full_like(raw.logits, float("nan"))
        )
        for key, value in zip(out, (*deployed(x, m), raw.logits, log_scale), strict=True):
            out[key].append(value.cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def fit_share_scale(fraction: np.ndarray, truth: np.ndarray, log_scale: np.ndarray, determined: np.ndarray):
    """Per-label factors on the learnt error scales so that +-1 spread holds the true share
    SHARE_COVERAGE of the time on validation data (entries where the share is not trivially
    zero: true or predicted share above 1 %); ones where too few entries (or no head)."""
    out = np.ones(truth.shape[1], dtype=np.float32)
    if not np.isfinite(log_scale).all():
        return out
    ratio = np.abs(fraction - truth) / np.exp(log_scale)
    relevant = (determined > 0) & ((truth > 0.01) | (fraction > 0.01))
    for j in range(truth.shape[1]):
        if relevant[:, j].sum() >= 20:
            out[j] = max(float(np.quantile(ratio[relevant[:, j], j], SHARE_COVERAGE)), 1e-3)
    return out


def fit_temperature(logits: np.ndarray, truth: np.ndarray, scored: np.ndarray, steps: int = 200) -> np.ndarray:
    """Per-label temperatures minimising the BCE of logits / T on the scored entries."""
    z = torch.from_numpy(logits).double()
    y = torch.from_numpy(truth.astype(np.float64))
    w = torch.from_numpy(scored.astype(np.float64))
    log_t = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        bce = F.binary_cross_entropy_with_logits(z / log_t.exp(), y, reduction="none")
        loss = (bce * w).sum() / w.sum().clamp_min(1)
        loss.backward()
        return loss

    optimiser.step(closure)
    return log_t.exp().detach().numpy().astype(np.float32)


def warm_start(model: torch.nn.Module, state: dict) -> None:
    """Copy matching weights from another run into a model whose layers may have grown.

    A grown tensor takes the old values in its leading slice. A weight matrix's new input
    columns (a first layer that now also reads the recorded-levels vector, a layer after a
    wider one) are zeroed and its new output rows keep their fresh initialisation, so the new
    units learn while the model still computes what the old one did (Net2Net-style). A
    localisation net that reads pooled points takes the full-grid weights summed over them."""
    own = model.state_dict()
    state = dict(state)
    for name, module in model.named_modules():
        if isinstance(module, Localisation):
            module.pool_state(state, prefix=f"{name}.")
    for key, value in own.items():
        old = state.get(key)
        if old is None or old.dim() != value.dim() or any(o > n for o, n in zip(old.shape, value.shape, strict=True)):
            continue
        if old.dim() == 2:
            value[:, old.shape[1] :] = 0.0
        value[tuple(slice(0, n) for n in old.shape)] = old
    model.load_state_dict(own)


def initial_weights(path: str, device: torch.device) -> dict:
    """Weights to warm-start from: a run's best.pt, or an exported .onnx model (the shipped one)."""
    if path.endswith(".onnx"):
        return {key: value.to(device) for key, value in weights_from_onnx(path).items()}
    return torch.load(path, map_location=device, weights_only=False)["model"]


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a torn checkpoint."""
    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train one model; returns the best checkpoint's contents (also saved as best.pt)."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    library = load_library()
    train_gen = MixtureGenerator(library, config.mixtures, seed=config.seed)
    val = MixtureGenerator(library, config.mixtures, seed=config.seed + VALIDATION_SEED_OFFSET).generate(
        config.val_size
    )
    model = build_model(config.model).to(device)
    if config.init_from:
        warm_start(model, initial_weights(config.init_from, device))
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(config.train_size / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    pos_weight = None
    if config.label_weighting:
        freq = val.labels.mean(axis=0).clip(1e-3, 1 - 1e-3)
        pos_weight = torch.tensor(np.sqrt((1 - freq) / freq), dtype=torch.float32, device=device)
    state = {"epoch": -1, "best_metric": -1.0, "best_epoch": -1, "history": [], "best_model": None, "stopped": False}
    if resume and (out / "checkpoint.pt").exists():
        saved = json.loads((out / "config.json").read_text())
        differ = sorted(
            k for k, v in config.to_json().items() if k != "out" and json.dumps(saved.get(k)) != json.dumps(v)
        )
        if differ:
            raise ValueError(f"cannot resume {out}: settings differ from the interrupted run: {', '.join(differ)}")
        ckpt = torch.load(out / "checkpoint.pt", map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        schedule.load_state_dict(ckpt["schedule"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = ckpt["state"]
    (out / "config.json").write_text(json.dumps(config.to_json(), indent=1))
    with_shift = reports_shift(model)
    acquisition = Acquisition().to(device)  # which labels the recorded regions can speak to

    for epoch in range(state["epoch"] + 1, config.epochs if not state.get("stopped") else 0):
        train_gen.new_epoch(epoch)
        model.train()
        bar = tqdm(total=config.train_size, desc=f"epoch {epoch}", unit="sp", disable=not progress, leave=False)
        losses, hits, seen = [], 0, 0
        for chunk in train_gen.iter_chunks(config.train_size, chunk=config.batch_size * 16, workers=1):
            everything = to_tensors(chunk, device)
            for start in range(0, len(everything[0]), config.batch_size):
                tensors = tuple(t[start : start + config.batch_size] for t in everything)
                x, m, y, _, known, _ = tensors
                output = model(x, m)
                # labels nothing recorded could show, and traces, carry no loss: no prior is learnt
                scored = (acquisition(normalise(x), m)[0] > 0).to(x.dtype) * known
                loss = training_loss(output, tensors, scored, config, pos_weight)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                schedule.step()
                losses.append(loss.item())
                hits += int((((output.logits > 0) == (y > 0.5)) | (scored == 0)).all(dim=1).sum())
                seen += len(x)
                bar.update(len(x))
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", acc=f"{hits / seen:.3f}")
        bar.close()
        v = predict(model, val, device=device)
        metric = exact_match(val.labels, v["probabilities"] >= 0.5, headline(scored_entries(val, v["determined"])))
        record = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "train_exact_match": hits / seen,
            "val_exact_match": metric,
            "val_shift_mae_ev": float(np.mean(np.abs(v["shift_ev"] - val.shift_ev))) if with_shift else None,
            "val_share_mae": float(np.nanmean(np.abs(v["group_fraction"] - val.group_fraction))),
            "lr": schedule.get_last_lr()[0],
        }
        state["history"].append(record)
        if progress:
            print(json.dumps(record))
        if metric > state["best_metric"]:
            state.update(best_metric=metric, best_epoch=epoch, best_model=copy.deepcopy(model.state_dict()))
        state["epoch"] = epoch
        state["stopped"] = epoch - state["best_epoch"] >= config.patience
        save_atomic(
            {
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "state": state,
            },
            out / "checkpoint.pt",
        )
        (out / "history.json").write_text(json.dumps(state["history"], indent=1))
        if state["stopped"]:
            break

    model.load_state_dict(state["best_model"])
    v = predict(model, val, device=device)
    scored = scored_entries(val, v["determined"])
    temperature = fit_temperature(v["logits"], val.labels, scored)
    share_scale = fit_share_scale(v["group_fraction"], val.group_fraction, v["share_log_scale"], v["determined"])
    probs = predict(model, val, temperature, device=device)["probabilities"]
    thresholds = tune_thresholds(val.labels, probs, scored=headline(scored))
    # every validation spectrum is a library polymer mixture: the flag's false-alarm rate there
    # is at most OUT_OF_LIBRARY_FALSE_ALARM, and never below the floor (real backgrounds)
    score_threshold = max(
        OUT_OF_LIBRARY_FLOOR, float(np.quantile(v["out_of_library_score"], 1 - OUT_OF_LIBRARY_FALSE_ALARM))
    )
    best = {
        "model_name": config.model,
        "model": state["best_model"],
        "config": config.to_json(),
        "thresholds": thresholds.tolist(),
        "temperature": temperature.tolist(),
        "share_scale": share_scale.tolist(),
        "out_of_library_threshold": score_threshold,
        "history": state["history"],
        "best_epoch": state["best_epoch"],
        "val_exact_match": state["best_metric"],
        "val_exact_match_tuned": exact_match(val.labels, probs >= thresholds, headline(scored)),
    }
    save_atomic(best, out / "best.pt")
    return best


def exported_checkpoint(path: str | Path) -> dict:
    """The best.pt contents that an exported model carries (weights, thresholds, calibration,
    out-of-library threshold, the generator settings it was trained on), so that `evaluate`
    scores the shipped model beside new runs."""
    metadata, tensors = read_exported(path)
    training = metadata.training_data
    config = TrainConfig(model=training["model"], seed=training["seed"]).to_json()
    return {
        "model_name": training["model"],
        "model": model_weights(tensors),
        "config": {**config, "mixtures": training["generator"]},  # as best.pt holds it (from_json reads it)
        "thresholds": list(metadata.thresholds),
        "temperature": tensors["temperature"].tolist(),
        "share_scale": tensors["share_scale"].tolist() if "share_scale" in tensors else None,
        "out_of_library_threshold": metadata.out_of_library_threshold,
        "training_data": training,
        "metrics": metadata.metrics,
    }


def load_trained(path: str | Path, device="cpu"):
    """(model in eval mode, thresholds (32,), best.pt contents) from a best.pt file or an
    exported .onnx model; the calibration temperatures are best["temperature"] (ones for runs
    made before calibration)."""
    if str(path).endswith(".onnx"):
        best = exported_checkpoint(path)
        model = build_model(best["model_name"])
        warm_start(model, best["model"])  # buffers the exporter folded are rebuilt by build_model
    else:
        best = torch.load(path, map_location=device, weights_only=False)
        model = build_model(best["model_name"])
        model.load_state_dict(best["model"])
    model.to(device).eval()
    thresholds = np.asarray(best.get("thresholds", [0.5] * NUM_LABELS), dtype=np.float32)
    best.setdefault("temperature", [1.0] * NUM_LABELS)
    return model, thresholds, best
