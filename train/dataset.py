"""Fixed synthetic data sets in one HDF5 file.

Datasets: `spectra` (N x 6601 float32, rows sum to 1), `labels` (N x 32 uint8, contract order),
`shift_ev` (N float32, the applied shift), `broadening_ev` (N float32), `recorded` (N x 9 uint8,
the core-level regions recorded) and `whole` (N uint8, whole grid recorded), `weights`
(N x 4 float32, component weights, 0 for unused slots; 1 - their sum is contamination),
`components` (N x 4 int16, index into the `polymers` attribute, -1 for unused),
`group_fraction` (N x 32 float32, the group shares of the sample), `ambiguous` (N x 32 uint8,
labels neither required nor wrong) and `atomic_fraction` (N x 9 float32, each level's element's
share of the atoms, contamination included). Attributes: `settings` (JSON of the generator
settings), `seed`, `label_names` and `polymers` (JSON lists), `grid` (JSON), `contract_version`.
The file is written under a temporary name and renamed when complete, so a failed run leaves
nothing half-written.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import h5py
import numpy as np

from xpstream.contract import (
    CONTRACT_VERSION,
    GRID_SIZE,
    GRID_START_EV,
    GRID_STEP_EV,
    GRID_STOP_EV,
    LABEL_NAMES,
    NUM_LABELS,
    check_version,
)
from xpstream.train.acquisition import LEVELS
from xpstream.train.mixtures import MAX_COMPONENTS, Batch, MixtureGenerator

_SHAPES = {
    "spectra": ((GRID_SIZE,), np.float32),
    "labels": ((NUM_LABELS,), np.uint8),
    "shift_ev": ((), np.float32),
    "broadening_ev": ((), np.float32),
    "weights": ((MAX_COMPONENTS,), np.float32),
    "components": ((MAX_COMPONENTS,), np.int16),
    "recorded": ((len(LEVELS),), np.uint8),
    "whole": ((), np.uint8),
    "group_fraction": ((NUM_LABELS,), np.float32),
    "ambiguous": ((NUM_LABELS,), np.uint8),
    "atomic_fraction": ((len(LEVELS),), np.float32),
}


def write_dataset(path: str | Path, generator: MixtureGenerator, n: int, chunk: int = 2048, progress=None) -> None:
    """Generate n spectra and write them to one HDF5 file (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with h5py.File(partial, "w") as h5:
            for name, (shape, dtype) in _SHAPES.items():
                h5.create_dataset(
                    name,
                    shape=(n, *shape),
                    dtype=dtype,
                    chunks=(min(chunk, max(n, 1)), *shape),
                    compression="lzf" if name == "spectra" else None,
                )
            h5.attrs.update(
                settings=json.dumps(generator.settings.as_dict()),
                seed=generator.seed,
                label_names=json.dumps(list(LABEL_NAMES)),
                polymers=json.dumps([p.abbr for p in generator.polymers]),
                grid=json.dumps({"start": GRID_START_EV, "stop": GRID_STOP_EV, "step": GRID_STEP_EV}),
                contract_version=CONTRACT_VERSION,
            )
            start = 0
            for batch in generator.iter_chunks(n, chunk):
                stop = start + len(batch.spectra)
                for name in _SHAPES:
                    h5[name][start:stop] = getattr(batch, name)
                start = stop
                if progress is not None:
                    progress(len(batch.spectra))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_dataset(path: str | Path, rows: slice = slice(None)) -> tuple[Batch, dict]:
    """Read (a slice of) a data set back: the batch and its attributes (JSON decoded)."""
    with h5py.File(path, "r") as h5:
        check_version(h5.attrs.get("contract_version", "?"), f"data set {path}")
        batch = Batch(**{f.name: h5[f.name][rows] for f in fields(Batch)})
        attrs = {k: (json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v) for k, v in h5.attrs.items()}
    return batch, attrs
