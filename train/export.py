"""ONNX export of a trained model: one graph, (spectra [N, 6601], measured [N, 6601]) ->
probabilities [N, 32], shift_ev [N], determined [N, 32], out_of_library_score [N].

The graph is `Deployed` (calibration, determinability, out-of-library score inside); it
normalises its input (any positive scale), has a dynamic batch axis, and carries the contract
metadata (labels, thresholds, grid, version, out-of-library threshold, training data, metrics),
so the daemon needs nothing but the .onnx file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from xpstream.contract import GRID_SIZE, MODEL_INPUTS, MODEL_OUTPUTS, ModelMetadata
from xpstream.train.models import Deployed


def export_onnx(model: nn.Module, metadata: ModelMetadata, path: str | Path, temperature=None, opset: int = 17) -> Path:
    """Write the model (with per-label calibration temperatures) as ONNX with metadata;
    refuses metadata that break the contract."""
    metadata.check()
    was_training = model.training
    wrapper = Deployed(model.cpu(), temperature).eval()  # a fresh wrapper would put the model in training mode
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
    """The metadata and the initializers (name -> array) of an exported model."""
    graph = onnx.load(str(path))
    metadata = ModelMetadata.from_strings({p.key: p.value for p in graph.metadata_props})
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
