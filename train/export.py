"""ONNX export of a trained model: one graph, spectra [N, 6601] -> probabilities [N, 32], shift_ev [N].

The graph normalises its input (any positive scale), has a dynamic batch axis, and carries
the contract metadata (labels, thresholds, grid, version, training data, metrics), so the
daemon needs nothing but the .onnx file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from xpstream.contract import GRID_SIZE, ModelMetadata

INPUT = "spectra"
OUTPUTS = ("probabilities", "shift_ev")


class _Exported(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, spectra):
        logits, shift_ev = self.model(spectra)
        return torch.sigmoid(logits), shift_ev


def export_onnx(model: nn.Module, metadata: ModelMetadata, path: str | Path, opset: int = 17) -> Path:
    """Write the model as ONNX with metadata; refuses metadata that break the contract."""
    metadata.check()
    was_training = model.training
    wrapper = _Exported(model.cpu()).eval()  # a fresh wrapper would put the model in training mode
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # we choose the TorchScript exporter
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            wrapper,
            (torch.rand(2, GRID_SIZE),),
            buffer,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_axes={INPUT: {0: "batch"}, OUTPUTS[0]: {0: "batch"}, OUTPUTS[1]: {0: "batch"}},
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
