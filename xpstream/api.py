"""The Python API, for notebooks and scripts: the same analysis core as the daemon.

    import xpstream
    predictions = xpstream.analyse("measurements/")   # a file, a folder, a list of paths,
    xpstream.to_frame(predictions)                     # regions, or grid spectra with masks

`load_model` opens a model once (default: the shipped one) for many calls to `analyse`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from xpstream.contract import GRID_SIZE, LABEL_NAMES, Prediction, Region
from xpstream.daemon.analysis import Analyser, Spectrum, list_files, open_backend, read_file

_shipped: Analyser | None = None


def load_model(path: str | Path | None = None, threads: int = 0) -> Analyser:
    """An `Analyser` holding the model at `path` (default: the shipped model)."""
    return Analyser(open_backend(path, threads=threads))


def _analyser(model: Analyser | str | Path | None) -> Analyser:
    global _shipped
    if isinstance(model, Analyser):
        return model
    if model is not None:
        return load_model(model)
    if _shipped is None:
        _shipped = load_model()
    return _shipped


def _spectra(source, measured, instrument: str, errors: str) -> list[Spectrum]:
    if isinstance(source, np.ndarray):
        grid = np.atleast_2d(np.asarray(source, dtype=np.float32))
        if grid.shape[1] != GRID_SIZE:
            raise ValueError(f"grid spectra need {GRID_SIZE} points per row, got shape {source.shape}")
        masks = [None] * len(grid) if measured is None else np.atleast_2d(np.asarray(measured, dtype=np.float32))
        return [
            Spectrum(f"spectrum {i}", spectrum=row, measured=mask, instrument=instrument)
            for i, (row, mask) in enumerate(zip(grid, masks, strict=True))
        ]
    if isinstance(source, Region):
        source = [source]
    if isinstance(source, list | tuple) and source and all(isinstance(r, Region) for r in source):
        return [Spectrum("regions", regions=list(source), recorded=list(source), instrument=instrument)]
    paths = [source] if isinstance(source, str | Path) else list(source)
    spectra = []
    for path in list_files(paths):
        try:
            spectra.append(read_file(path, instrument))
        except (ValueError, OSError) as err:
            if errors == "raise":
                raise
            warnings.warn(f"skipped {err}", stacklevel=3)
    return spectra


def analyse(
    source,
    model: Analyser | str | Path | None = None,
    measured: np.ndarray | None = None,
    instrument: str = "",
    errors: str = "warn",
) -> list[Prediction]:
    """Predictions for `source`: a file or folder path (folders searched recursively for the
    file types the daemon reads), a list of paths, a list of `Region`s (one spectrum), or grid
    spectra (6601 or N x 6601) with their measured-region masks (`measured`, default: the whole
    grid). `model`: an `Analyser` from `load_model`, a model path, or None for the shipped model.
    A file that cannot be read is skipped with a warning naming it (errors="raise": ValueError
    or OSError instead)."""
    if errors not in ("warn", "raise"):
        raise ValueError(f"errors must be 'warn' or 'raise', got {errors!r}")
    spectra = _spectra(source, measured, instrument, errors)
    return _analyser(model).analyse(spectra) if spectra else []


def to_frame(predictions: list[Prediction]):
    """A pandas DataFrame, one row per prediction (probabilities as p_LABEL columns); needs pandas."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_frame needs pandas: pip install pandas") from None
    rows = []
    for pred in predictions:
        row = pred.to_dict()
        probabilities = row.pop("probabilities")
        rows.append({**row, **{f"p_{name}": probabilities[name] for name in LABEL_NAMES}})
    return pd.DataFrame(rows)
