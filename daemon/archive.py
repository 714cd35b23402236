"""Re-analysis of archived spectrum files on Ray Data (the `cluster` extra).

`xpstream batch SOURCE... --out RESULTS` lists the files, and Ray Data's `map_batches` sends
them to actors that each hold one onnxruntime session and run the daemon's own parsing,
preprocessing graph and model. Each file becomes one Parquet row with the daemon's prediction
record; a file that cannot be read gets a row with its error and never stops the run. Ray runs
locally by default, or on the cluster at `address`.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import numpy as np

from xpstream.contract import LABEL_NAMES, Prediction
from xpstream.daemon.config import WatchConfig

PATTERNS = WatchConfig().patterns


def list_files(sources: list[str]) -> list[str]:
    """Files named directly, and files matching the daemon's patterns below named folders."""
    files = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(
                str(p) for p in path.rglob("*") if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in PATTERNS)
            )
        elif path.is_file():
            files.append(str(path))
        else:
            raise FileNotFoundError(f"no such file or folder: {source}")
    return files


def row_schema():
    """Column types of the Parquet rows: the daemon's prediction record plus file fields."""
    import pyarrow as pa

    text, texts = pa.string(), pa.list_(pa.string())
    return pa.schema(
        [
            ("source", text),
            ("error", text),
            ("regions", texts),
            ("labels", texts),
            ("probabilities", pa.list_(pa.float64())),
            ("shift_ev", pa.float64()),
            ("undetermined", texts),
            ("in_library", pa.bool_()),
            ("out_of_library_score", pa.float64()),
            ("unexplained_regions", texts),
            ("model", text),
            ("model_version", text),
        ]
    )


class FilePredictor:
    """A Ray actor: one model session, batches of file paths in, prediction rows out."""

    def __init__(self, model_path: str, threads: int = 1):
        from xpstream.daemon.infer import load_model

        self.model = load_model(model_path, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]):
        """A pyarrow table of prediction rows (typed, so a batch of empty lists stays list<string>)."""
        import pyarrow as pa

        from xpstream.daemon.parse import parse_file
        from xpstream.daemon.preprocess import unexplained_regions

        rows = {"source": [], "error": [], "regions": []}
        good, regions, recorded = [], [], []
        for i, path in enumerate(batch["path"]):
            try:
                parsed = parse_file(path)
            except (ValueError, OSError) as err:
                rows["error"].append(str(err))
                rows["regions"].append([])
            else:
                rows["error"].append(None)
                rows["regions"].append([r.name for r in parsed.regions])
                good.append(i)
                regions.append(parsed.regions)
                recorded.append(parsed.recorded)
            rows["source"].append(str(path))
        n = len(rows["source"])
        empty = {"labels": [], "probabilities": None, "shift_ev": None, "undetermined": []}
        empty.update(in_library=None, out_of_library_score=None, unexplained_regions=[])
        rows.update({key: [value] * n for key, value in empty.items()})
        if regions:
            outputs = self.model.run_regions(regions)
            elements = self.model.metadata.elements
            unexplained = [unexplained_regions(seen, elements) for seen in recorded]
            preds = Prediction.from_batch([rows["source"][i] for i in good], outputs, self.model.metadata, unexplained)
            for i, pred in zip(good, preds, strict=True):
                for key in empty:
                    rows[key][i] = getattr(pred, key)
                rows["probabilities"][i] = [pred.probabilities[name] for name in LABEL_NAMES]
        meta = self.model.metadata
        rows.update(model=[meta.model_id] * n, model_version=[meta.version] * n)
        return pa.Table.from_pydict(rows, schema=row_schema())


def run_batch(
    sources: list[str],
    out: str,
    model_path: str,
    address: str | None = None,
    workers: int = 2,
    batch_size: int = 64,
) -> dict:
    """Analyse every file; write Parquet to `out` (a folder); return counts."""
    import ray

    files = list_files(sources)
    if not files:
        raise FileNotFoundError("no spectrum files found in the sources")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)
    try:
        dataset = ray.data.from_items([{"path": f} for f in files])
        results = dataset.map_batches(
            FilePredictor,
            fn_constructor_kwargs={"model_path": str(model_path)},
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        results.write_parquet(out)
    finally:
        if started_here:
            ray.shutdown()
    summary = {"files": len(files), "out": out, "labels": list(LABEL_NAMES)}
    Path(out, "_xpstream.json").write_text(json.dumps(summary, indent=1))
    return summary
