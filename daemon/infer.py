"""ONNX inference: load a model file, check its metadata against the contract, run batches.

onnxruntime picks the CUDA execution provider when it is available (the `gpu` extra) and the
CPU provider otherwise; `provider` says which one a session uses.

Two sessions serve one model: `run` takes grid-ready spectra with their measured-region masks;
`run_regions` takes padded regions (their masks are built on the host) and runs the
preprocessing graph (models/preprocess.onnx) and the model as ONE merged graph (onnx.compose),
so on a GPU host a batch crosses to the device once and comes back as probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx.compose

try:  # the runtime is an extra: onnxruntime ([cpu]) or onnxruntime-gpu ([gpu]) provide this module
    import onnxruntime as ort
except ImportError:  # pragma: no cover - reported when a model is opened
    ort = None

from xpstream.contract import (
    CONTRACT_VERSION,
    MODEL_INPUTS,
    MODEL_OUTPUTS,
    ContractError,
    ModelMetadata,
    Region,
    check_spectra,
    whole_grid_mask,
)
from xpstream.models import preprocess_model_path
from xpstream.spectrum import BACKGROUND_SEARCH_EV, LIMIT_SMOOTHING_EV, SHIRLEY_ITERATIONS, pad_regions

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
PREPROCESS_PREFIX = "pre_"


@dataclass
class LoadedModel:
    path: Path
    session: ort.InferenceSession  # spectra, measured -> MODEL_OUTPUTS
    with_preprocessing: ort.InferenceSession  # padded regions, measured -> MODEL_OUTPUTS
    metadata: ModelMetadata
    _whole_grid: np.ndarray = field(default_factory=lambda: whole_grid_mask(0), repr=False)  # reused mask of ones

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, spectra: np.ndarray, measured: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Outputs (keyed MODEL_OUTPUTS) for grid spectra (N, 6601) and their measured-region
        masks (N, 6601; None: the whole grid was recorded)."""
        spectra = check_spectra(spectra)
        if measured is None:
            if len(self._whole_grid) < len(spectra):
                self._whole_grid = whole_grid_mask(len(spectra))
            measured = self._whole_grid[: len(spectra)]
        else:
            measured = check_spectra(measured)
        if measured.shape != spectra.shape:
            raise ContractError(f"mask shape {measured.shape} differs from spectra shape {spectra.shape}")
        return dict(zip(MODEL_OUTPUTS, self.session.run(None, {"spectra": spectra, "measured": measured}), strict=True))

    def close(self) -> None:
        """Nothing to release: the sessions go with the object (`InferenceBackend`)."""

    def run_regions(self, spectra: list[list[Region]]) -> dict[str, np.ndarray]:
        """Outputs (keyed MODEL_OUTPUTS) for N spectra given as lists of core-level regions."""
        batch = pad_regions(spectra)
        feeds = {PREPROCESS_PREFIX + name: value for name, value in batch.feeds().items()}
        feeds["measured"] = batch.measured
        return dict(zip(MODEL_OUTPUTS, self.with_preprocessing.run(None, feeds), strict=True))


def shipped_model_version() -> str:
    """'shipped model MODEL_ID VERSION' (or why it cannot be read)."""
    from xpstream.models import default_model_path

    try:
        props = {p.key: p.value for p in onnx.load(str(default_model_path()), load_external_data=False).metadata_props}
        return f"shipped model {props['model_id']} {props['version']}"
    except Exception as err:
        return f"shipped model unreadable ({type(err).__name__})"


def load_preprocessing(path: Path) -> onnx.ModelProto:
    """The preprocessing graph, refused (ContractError) unless its metadata match this
    contract and the numpy reference's Shirley constants (xpstream.spectrum)."""
    try:
        graph = onnx.load(str(path))
    except Exception as err:
        raise ContractError(f"preprocessing graph {path} cannot be loaded: {err}") from None
    found = {p.key: p.value for p in graph.metadata_props}
    expected = {
        "contract_version": CONTRACT_VERSION,
        "shirley_iterations": str(SHIRLEY_ITERATIONS),
        "background_search_ev": str(BACKGROUND_SEARCH_EV),
        "limit_smoothing_ev": str(LIMIT_SMOOTHING_EV),
    }
    wrong = {k: found.get(k) for k, v in expected.items() if found.get(k) != v}
    if wrong:
        raise ContractError(
            f"preprocessing graph {path} refused: {wrong} differ from {expected}; "
            "rebuild it with `xpstream export-preprocess`"
        )
    return graph


def load_model(path: str | Path, threads: int = 0, providers=None, spinning: bool = True) -> LoadedModel:
    """Open an ONNX model; refuse it (ContractError) if its metadata disagree with the contract.

    spinning=False stops onnxruntime's idle intra-op threads from busy-waiting between runs:
    the daemon's socket and publisher threads need those cores (measured in `bench daemon`)."""
    path = Path(path)
    if ort is None:
        raise ContractError("no onnxruntime installed: pip install 'xpstream[cpu]' (or 'xpstream[gpu]' on a CUDA host)")
    if not path.is_file():
        raise ContractError(f"model file {path} does not exist")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
    if tuple(i.name for i in inputs) != MODEL_INPUTS or tuple(outputs) != MODEL_OUTPUTS:
        raise ContractError(f"model {path.name} refused: expected inputs {MODEL_INPUTS} and outputs {MODEL_OUTPUTS}")
    preprocess = load_preprocessing(preprocess_model_path())
    merged = onnx.compose.merge_models(preprocess, graph, io_map=[("spectra", "spectra")], prefix1=PREPROCESS_PREFIX)
    with_preprocessing = ort.InferenceSession(merged.SerializeToString(), options, providers=chosen)
    return LoadedModel(path, session, with_preprocessing, metadata)
