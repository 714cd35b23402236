"""The analysis core: parsed spectra in, `Prediction`s out. The daemon, `xpstream predict`, the
Python API, `xpstream batch` and the benchmarks all call `Analyser.analyse`; nothing else runs
the chain (model -> out-of-library check -> element composition -> records).

A spectrum to analyse is anything with the attributes of `Spectrum` (the daemon's queue items
have them): grid-ready intensities with their measured-region mask, or core-level regions that
the model's preprocessing graph turns into a grid spectrum, plus every recorded region for the
out-of-library check and the instrument it came from (its kinetic-energy response).

Models are reached through `InferenceBackend` (in-process onnxruntime, or Ray actors), opened by
`open_backend`, which also refuses a model outside the configured model folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from xpstream.contract import ContractError, ModelMetadata, Prediction, Region, whole_grid_mask
from xpstream.daemon.parse import parse_file, supported_suffixes
from xpstream.quantify import NO_CROSS_SECTION, InstrumentResponse, element_composition
from xpstream.spectrum import element_named, unexplained_regions

# Region spectra are preprocessed together, each region padded to the batch's longest: a batch
# is split so that it holds at most this many padded points (tens of MB in the float64 graph).
MAX_BATCH_PADDED_POINTS = 1 << 21


class InferenceBackend(Protocol):
    """A loaded model: metadata, and outputs (keyed MODEL_OUTPUTS) for grid spectra or regions."""

    metadata: ModelMetadata
    provider: str

    def run(self, spectra: np.ndarray, measured: np.ndarray | None = None) -> dict[str, np.ndarray]: ...

    def run_regions(self, spectra: list[list[Region]]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


def open_backend(
    path: str | Path | None = None,
    threads: int = 0,
    spinning: bool = True,
    ray_address: str = "",
    ray_actors: int = 1,
    folder: str = "",
) -> InferenceBackend:
    """The model at `path` (default: the shipped one) in this process, or on Ray actors when
    `ray_address` is set; a model outside `folder` (when set) is refused (ContractError)."""
    from xpstream.models import default_model_path

    path = Path(path).expanduser() if path else Path(str(default_model_path()))
    if folder and not path.resolve().is_relative_to(Path(folder).expanduser().resolve()):
        raise ContractError(f"model {path} lies outside model.folder {folder}; refused")
    if ray_address:
        from xpstream.daemon import ray_inference

        ray_inference.connect(ray_address)
        return ray_inference.RayModel(path, threads, ray_actors)
    from xpstream.daemon.infer import load_model

    return load_model(path, threads=threads, spinning=spinning)


@dataclass
class Spectrum:
    """One spectrum to analyse (the daemon's `sources.Item` has the same attributes)."""

    origin: str  # file path or endpoint, for the record
    spectrum: np.ndarray | None = None  # (GRID_SIZE,) grid-ready intensities, or
    regions: list[Region] = field(default_factory=list)  # core-level regions to preprocess
    measured: np.ndarray | None = None  # (GRID_SIZE,) mask of a grid spectrum; None = whole grid
    recorded: list[Region] = field(default_factory=list)  # every non-survey region (out-of-library check)
    instrument: str = ""
    skipped: list[str] = field(default_factory=list)  # regions of the file left out, "name: reason"


def read_file(path: str | Path, instrument: str = "") -> Spectrum:
    """A file's spectrum (ParseError, OSError when it cannot be read)."""
    parsed = parse_file(path)
    return Spectrum(
        str(path), regions=parsed.regions, recorded=parsed.recorded, instrument=instrument, skipped=parsed.skipped
    )


def list_files(sources: list[str | Path]) -> list[str]:
    """Files named directly, and the readable files (any reader's suffix, any case) below named
    folders, sorted (FileNotFoundError for a name that is neither)."""
    suffixes = set(supported_suffixes())
    files = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
        elif path.is_file():
            files.append(str(path))
        else:
            raise FileNotFoundError(f"no such file or folder: {source}")
    return files


def _bounded_chunks(region_lists: list[list[Region]], indices: list[int], limit: int):
    """`indices` in order, split so that each chunk's padded regions (all its regions x the
    longest) stay within `limit` points (a spectrum alone may exceed it)."""
    chunk, rows, width = [], 0, 0
    for index, regions in zip(indices, region_lists, strict=True):
        longest = max((len(r.counts) for r in regions), default=0)
        if chunk and (rows + len(regions)) * max(width, longest) > limit:
            yield chunk
            chunk, rows, width = [], 0, 0
        chunk.append(index)
        rows, width = rows + len(regions), max(width, longest)
    if chunk:
        yield chunk


def analyse_files(analyser: Analyser, files: list[str]):
    """Each file (from `list_files`) read and analysed in turn: yields (path, spectrum,
    prediction, None), or (path, None, None, error) for a file that cannot be read."""
    for path in files:
        try:
            spectrum = read_file(path)
        except (ValueError, OSError) as err:
            yield path, None, None, err
            continue
        yield path, spectrum, analyser.analyse([spectrum])[0], None


class Analyser:
    """Spectra -> predictions with one model. `instruments`: the kinetic-energy response of named
    instruments where it differs from the library's (element composition)."""

    def __init__(self, backend: InferenceBackend, instruments: dict[str, InstrumentResponse] | None = None):
        self.backend = backend
        self.instruments = instruments or {}
        self._whole = whole_grid_mask(1)[0]

    @property
    def metadata(self) -> ModelMetadata:
        return self.backend.metadata

    def analyse(self, spectra: list) -> list[Prediction]:
        """One prediction per spectrum, in order (grid spectra and regions may be mixed)."""
        grid = [i for i, s in enumerate(spectra) if s.spectrum is not None]
        regions = [i for i, s in enumerate(spectra) if s.spectrum is None]
        predictions: list[Prediction | None] = [None] * len(spectra)
        for rows, outputs in self._run(spectra, grid, regions):
            for i, pred in zip(rows, self._records([spectra[i] for i in rows], outputs), strict=True):
                predictions[i] = pred
        return predictions

    def _run(self, spectra, grid: list[int], regions: list[int]):
        if grid:
            masks = [spectra[i].measured for i in grid]
            measured = None  # the common case: whole-grid spectra, one mask of ones for the batch
            if any(m is not None for m in masks):
                measured = np.stack([self._whole if m is None else m for m in masks])
            yield grid, self.backend.run(np.stack([spectra[i].spectrum for i in grid]), measured)
        for chunk in _bounded_chunks([spectra[i].regions for i in regions], regions, MAX_BATCH_PADDED_POINTS):
            yield chunk, self.backend.run_regions([spectra[i].regions for i in chunk])

    def _records(self, spectra, outputs) -> list[Prediction]:
        meta = self.metadata
        unexplained = [unexplained_regions(s.recorded, meta.elements) for s in spectra]
        responses = [self.instruments.get(s.instrument, InstrumentResponse()) for s in spectra]
        compositions = element_composition(
            outputs["level_area"], outputs["level_recorded"], meta.levels, meta.instrument, responses
        )
        for s, (_, not_quantified) in zip(spectra, compositions, strict=True):
            for region in s.recorded:  # regions of elements the library has no cross section for
                element = element_named(region.name)
                if element and meta.elements and element not in meta.elements:
                    not_quantified.setdefault(element, NO_CROSS_SECTION.format(region=region.name))
        return Prediction.from_batch([s.origin for s in spectra], outputs, meta, unexplained, compositions)
