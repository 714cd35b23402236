"""ONNX export of a trained model: one graph, (spectra [N, 6601], measured [N, 6601]) -> the
contract's MODEL_OUTPUTS (probabilities, shift, determinability, out-of-library score, group
shares and their spread, recorded levels and their areas).

The graph is `Deployed` (calibration, determinability, out-of-library score inside); it
normalises its input (any positive scale), has a dynamic batch axis, and carries the contract
metadata (labels, thresholds, grid, version, out-of-library threshold, training data, metrics),
so the daemon needs nothing but the .onnx file.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from xpstream.contract import GRID_SIZE, MODEL_INPUTS, MODEL_OUTPUTS, NUM_LABELS, ModelMetadata
from xpstream.train.acquisition import LEVELS
from xpstream.train.library import Library, load_library
from xpstream.train.models import Acquisition, normalise

REPORT_KEYS = ("exact_match", "exact_match_at_0.5", "micro_f1", "macro_f1", "shift_mae_ev")


class Deployed(nn.Module):
    """What the exported graph computes from (spectra, measured) (`contract.MODEL_OUTPUTS`):
    probabilities (N, 32) with per-label temperature calibration and 0.5 (no evidence) where
    `determined` is 0; shift_ev (N,); determined (N, 32); out_of_library_score (N,);
    group_fraction (N, 32), the share of the sample's non-H atoms in each group, and
    group_fraction_std (N, 32), its calibrated spread (NaN for models without a composition
    head); level_recorded and level_area (N, L), for the classical element quantification."""

    def __init__(self, model: nn.Module, temperature=None, share_scale=None):
        super().__init__()
        self.model = model
        # the model's own maps when it reads the mask: one set of buffers in the graph, so
        # onnxruntime merges the repeated mask -> levels product instead of computing it twice
        self.acquisition = getattr(model, "acquisition", None) or Acquisition()
        t = torch.ones(NUM_LABELS) if temperature is None else torch.as_tensor(temperature, dtype=torch.float32)
        self.register_buffer("temperature", t.clone())
        scale = torch.ones(NUM_LABELS) if share_scale is None else torch.as_tensor(share_scale, dtype=torch.float32)
        self.register_buffer("share_scale", scale.clone())

    def forward(self, spectra, measured):
        out = self.model(spectra, measured)
        determined, score, recorded, level_area = self.acquisition(normalise(spectra), measured)
        probs = torch.sigmoid(out.logits / self.temperature)
        probs = torch.where(determined > 0, probs, torch.full_like(probs, 0.5))
        if out.share_logits is None:
            fraction = torch.full_like(probs, float("nan"))
            spread = fraction
        else:
            fraction = torch.softmax(out.share_logits, dim=1)
            spread = torch.exp(out.share_log_scale) * self.share_scale
        return probs, out.shift_ev, determined, score, fraction, spread, recorded, level_area


def library_metadata(library: Library) -> dict:
    """The ModelMetadata fields that come from the library: its elements, the detection limit,
    and the levels and instrument response of the classical quantification."""
    levels = []
    for name in LEVELS:
        level = library.levels[name]
        main = [e.be_ev for e in library.environments.values() if e.level.name == name]
        levels.append(
            {
                "name": name,
                "element": level.element,
                "cross_section_barn": level.cross_section_barn,
                "be_ev": round(float(np.median(main)), 2),
            }
        )
    inst = library.instrument
    return {
        "elements": sorted({level.element for level in library.levels.values()}),
        "detection_limit": library.label_rules.detection_limit,
        "levels": levels,
        "instrument": {
            "photon_energy_ev": inst.photon_energy_ev,
            "imfp_exponent": inst.imfp_exponent,
            "transmission_exponent": inst.transmission_exponent,
        },
    }


def report_metrics(reports: dict[str, str]) -> dict:
    """Headline numbers of the first model of `xpstream evaluate` report.json files, by name."""
    metrics = {}
    for name, path in reports.items():
        report = json.loads(Path(path).read_text())
        first = next(iter(report["models"].values()))
        metrics[name] = {k: round(first[k], 4) for k in REPORT_KEYS if k in first}
        metrics[name]["ece"] = round(first["calibration"]["calibrated"]["ece"], 4)
        settings = report["test_set"]["settings"]
        metrics[name]["test_set"] = {k: report["test_set"][k] for k in ("n", "seed")}
        metrics[name]["test_set"].update(acquisition=settings["acquisition"], max_shift_ev=settings["max_shift_ev"])
    return metrics


def export_trained(checkpoint: str, path: str | Path, model_id: str, version: str, reports: dict[str, str]) -> Path:
    """Export a run's best.pt (or a model re-read from .onnx, under this contract) with its
    calibration, thresholds, training settings, the library's metadata and the headline numbers
    of `reports` (a re-export without reports keeps the model's own)."""
    from xpstream.train.trainer import load_trained

    model, thresholds, best = load_trained(checkpoint)
    metadata = ModelMetadata(
        model_id=model_id,
        version=version,
        thresholds=[float(t) for t in thresholds],
        out_of_library_threshold=float(best.get("out_of_library_threshold", 1.0)),
        training_data=best.get("training_data")  # a re-export of an exported model keeps its own
        or {
            "model": best["model_name"],
            "generator": best["config"]["mixtures"],
            "train_size_per_epoch": best["config"]["train_size"],
            "epochs_trained": len(best["history"]),
            "best_epoch": best["best_epoch"],
            "seed": best["config"]["seed"],
        },
        metrics=report_metrics(reports) or best.get("metrics", {}),
        **library_metadata(load_library()),
    )
    return export_onnx(model, metadata, path, best["temperature"], best.get("share_scale"))


def export_onnx(
    model: nn.Module, metadata: ModelMetadata, path: str | Path, temperature=None, share_scale=None, opset: int = 17
) -> Path:
    """Write the model (with per-label calibration temperatures and share-spread scales) as
    ONNX with metadata; refuses metadata that break the contract."""
    metadata.check()
    was_training = model.training
    # a fresh wrapper would put the model in training mode
    wrapper = Deployed(model.cpu(), temperature, share_scale).eval()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # we choose the TorchScript exporter
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            wrapper,
            (torch.rand(2, GRID_SIZE), torch.ones(2, GRID_SIZE)),
            buffer,
            input_names=list(MODEL_INPUTS),
            output_names=list(MODEL_OUTPUTS),
            dynamic_axes={name: {0: "batch"} for name in (*MODEL_INPUTS, *MODEL_OUTPUTS)},
            opset_version=opset,
            dynamo=False,
        )
    model.train(was_training)
    graph = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.to_strings().items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    graph.producer_name = "xpstream"
    onnx.checker.check_model(graph)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, path)
    return path


def read_exported(path: str | Path) -> tuple[ModelMetadata, dict[str, np.ndarray]]:
    """The metadata and the initializers (name -> array) of an exported model (of this contract
    or an earlier one: the shipped model of the last release is scored beside new runs)."""
    graph = onnx.load(str(path))
    metadata = ModelMetadata.from_strings({p.key: p.value for p in graph.metadata_props}, any_version=True)
    return metadata, {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}


def model_weights(initializers: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The trained model's tensors among an exported graph's initializers (its `model.*` ones),
    keyed as in the model's state_dict, so that a run can warm-start from a shipped .onnx file.
    Buffers that the exporter folded into constants are not among them; the model rebuilds those."""
    prefix = "model."
    return {
        name[len(prefix) :]: torch.from_numpy(v.copy()) for name, v in initializers.items() if name.startswith(prefix)
    }


def weights_from_onnx(path: str | Path) -> dict[str, torch.Tensor]:
    """`model_weights` of an exported model file."""
    return model_weights(read_exported(path)[1])
