"""ONNX inference: load a model file, check its metadata against the contract, run batches.

onnxruntime picks the CUDA execution provider when it is available (the `gpu` extra) and the
CPU provider otherwise; `provider` says which one a session uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from xpstream.contract import ContractError, ModelMetadata, check_spectra

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


@dataclass
class LoadedModel:
    path: Path
    session: ort.InferenceSession
    metadata: ModelMetadata
    thresholds: np.ndarray

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, spectra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (N, 32) and shift_ev (N,) for grid spectra (N, 6601)."""
        probabilities, shift_ev = self.session.run(None, {"spectra": check_spectra(spectra)})
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
        session = ort.InferenceSession(str(path), options, providers=chosen)
    except Exception as err:  # onnxruntime raises its own exception types
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
    return LoadedModel(path, session, metadata, np.asarray(metadata.thresholds, dtype=np.float32))
