"""ONNX inference: load a model file, check its metadata against the contract, run batches.

onnxruntime picks the CUDA execution provider when it is available (the `gpu` extra) and the
CPU provider otherwise; `provider` says which one a session uses.

Two sessions serve one model: `run` takes grid-ready spectra; `run_regions` takes padded
regions and runs the preprocessing graph (models/preprocess.onnx) and the model as ONE merged
graph (onnx.compose), so on a GPU host a batch crosses to the device once and comes back as
probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.compose
import onnxruntime as ort

from xpstream.contract import ContractError, ModelMetadata, Region, check_spectra
from xpstream.daemon.preprocess import pad_regions
from xpstream.models import preprocess_model_path

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
PREPROCESS_PREFIX = "pre_"


@dataclass
class LoadedModel:
    path: Path
    session: ort.InferenceSession  # spectra -> probabilities, shift_ev
    with_preprocessing: ort.InferenceSession  # padded regions -> probabilities, shift_ev
    metadata: ModelMetadata
    thresholds: np.ndarray

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, spectra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (N, 32) and shift_ev (N,) for grid spectra (N, 6601)."""
        probabilities, shift_ev = self.session.run(None, {"spectra": check_spectra(spectra)})
        return probabilities, shift_ev

    def run_regions(self, spectra: list[list[Region]]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and shift_ev for N spectra given as lists of core-level regions."""
        feeds = {PREPROCESS_PREFIX + name: value for name, value in pad_regions(spectra).feeds().items()}
        probabilities, shift_ev = self.with_preprocessing.run(None, feeds)
        return probabilities, shift_ev


def load_model(path: str | Path, threads: int = 0, providers=None) -> LoadedModel:
    """Open an ONNX model; refuse it (ContractError) if its metadata disagree with the contract."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"model file {path} does not exist")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    available = ort.get_available_providers()
    chosen = [p for p in (providers or PREFERRED_PROVIDERS) if p in available]
    try:
        graph = onnx.load(str(path))
        session = ort.InferenceSession(graph.SerializeToString(), options, providers=chosen)
    except Exception as err:  # onnx and onnxruntime raise their own exception types
        raise ContractError(f"model file {path} cannot be loaded: {err}") from None
    try:
        metadata = ModelMetadata.from_strings(session.get_modelmeta().custom_metadata_map)
    except ContractError as err:
        raise ContractError(f"model {path.name} refused: {err}") from None
    inputs = session.get_inputs()
    outputs = [o.name for o in session.get_outputs()]
    if [i.name for i in inputs] != ["spectra"] or outputs != ["probabilities", "shift_ev"]:
        raise ContractError(
            f"model {path.name} refused: expected input 'spectra' and outputs 'probabilities', 'shift_ev'"
        )
    preprocess = onnx.load(str(preprocess_model_path()))
    merged = onnx.compose.merge_models(preprocess, graph, io_map=[("spectra", "spectra")], prefix1=PREPROCESS_PREFIX)
    with_preprocessing = ort.InferenceSession(merged.SerializeToString(), options, providers=chosen)
    thresholds = np.asarray(metadata.thresholds, dtype=np.float32)
    return LoadedModel(path, session, with_preprocessing, metadata, thresholds)
