"""Re-analysis of archived spectrum files on Ray Data (the `cluster` extra).

`xpstream batch SOURCE... --out RESULTS` lists the files, and Ray Data's `map_batches` sends
them to actors that each hold one onnxruntime session and run the daemon's own parsing,
preprocessing graph and model. Each file becomes one Parquet row with the daemon's prediction
record; a file that cannot be read gets a row with its error and never stops the run. Ray runs
locally by default, or on the cluster at `address`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from xpstream.contract import LABEL_NAMES
from xpstream.daemon.analysis import list_files


def row_schema():
    """Column types of the Parquet rows: the daemon's prediction record plus file fields."""
    import pyarrow as pa

    text, texts, shares = pa.string(), pa.list_(pa.string()), pa.map_(pa.string(), pa.float64())
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
            ("group_percent", shares),
            ("group_percent_std", shares),
            ("atomic_percent", shares),
            ("not_quantified", pa.map_(pa.string(), pa.string())),
            ("model", text),
            ("model_version", text),
        ]
    )


class FilePredictor:
    """A Ray actor: one model session, batches of file paths in, prediction rows out."""

    def __init__(self, model_path: str, threads: int = 1):
        from xpstream.daemon.analysis import Analyser, open_backend

        self.analyser = Analyser(open_backend(model_path, threads=threads))

    def __call__(self, batch: dict[str, np.ndarray]):
        """A pyarrow table of prediction rows (typed, so a batch of empty lists stays list<string>)."""
        import pyarrow as pa

        from xpstream.daemon.analysis import read_file

        schema = row_schema()
        rows = {name: [None] * len(batch["path"]) for name in schema.names}
        good, spectra = [], []
        for i, path in enumerate(batch["path"]):
            rows["source"][i], rows["regions"][i] = str(path), []
            try:
                spectra.append(read_file(path))
            except (ValueError, OSError) as err:
                rows["error"][i] = str(err)
            else:
                rows["regions"][i] = [r.name for r in spectra[-1].regions]
                good.append(i)
        for i, pred in zip(good, self.analyser.analyse(spectra) if spectra else [], strict=True):
            record = pred.to_dict()
            record["probabilities"] = [pred.probabilities[name] for name in LABEL_NAMES]
            for key in schema.names:
                if key in record:
                    rows[key][i] = record[key]
        meta = self.analyser.metadata
        rows.update(model=[meta.model_id] * len(rows["source"]), model_version=[meta.version] * len(rows["source"]))
        for key in ("labels", "undetermined", "unexplained_regions"):
            rows[key] = [value if value is not None else [] for value in rows[key]]
        return pa.Table.from_pydict(rows, schema=schema)


def run_batch(
    sources: list[str],
    out: str,
    model_path: str,
    address: str | None = None,
    workers: int = 2,
    batch_size: int = 64,
    verbose: bool = False,
) -> dict:
    """Analyse every file; write OUT/predictions.parquet (a folder) with a progress bar; return
    the counts. Ray's own logging and progress bars only with `verbose`."""
    import logging

    import pyarrow.parquet as pq
    import ray
    from tqdm import tqdm

    files = list_files(sources)
    if not files:
        raise FileNotFoundError("no spectrum files found in the sources")
    started_here = not ray.is_initialized()
    if started_here:
        if not verbose:
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray core's own error lines
        ray.init(
            address=address,
            num_cpus=None if address else workers + 1,  # the actors and the driver's reads
            include_dashboard=False,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.ERROR,
        )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = verbose
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.ERROR)
    summary = {"files": len(files), "refused": 0, "out_of_library": 0, "out": out, "labels": list(LABEL_NAMES)}
    Path(out).mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        dataset = ray.data.from_items([{"path": f} for f in files])
        results = dataset.map_batches(
            FilePredictor,
            fn_constructor_kwargs={"model_path": str(model_path)},
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        with tqdm(total=len(files), unit="file", desc="batch", disable=verbose) as bar:
            for table in results.iter_batches(batch_format="pyarrow", batch_size=None):
                writer = writer or pq.ParquetWriter(Path(out) / "predictions.parquet", table.schema)
                writer.write_table(table)
                errors = table.column("error").to_pylist()
                summary["refused"] += sum(e is not None for e in errors)
                in_library = table.column("in_library").to_pylist()
                summary["out_of_library"] += sum(
                    e is None and v is False for e, v in zip(errors, in_library, strict=True)
                )
                bar.update(table.num_rows)
    finally:
        if writer is not None:
            writer.close()
        if started_here:
            ray.shutdown()
    Path(out, "_xpstream.json").write_text(json.dumps(summary, indent=1))
    return summary
