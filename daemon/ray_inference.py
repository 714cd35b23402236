"""The daemon's inference stage on Ray actors (the `cluster` extra), for a cluster that serves
many instruments: the daemon keeps its sources, batching, publishing and metrics, and each
batch is run by one of `actors` Ray actors that hold the model (round robin).

Enabled with `[model] ray_address = "local"` (a local Ray instance) or a cluster address;
`connect` joins Ray once per process, before the first model is loaded.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from xpstream.contract import ModelMetadata, Region


class _ModelActor:
    def __init__(self, path: str, threads: int):
        from xpstream.daemon.infer import load_model

        self.model = load_model(path, threads=threads)

    def describe(self) -> tuple[dict[str, str], str]:
        return self.model.session.get_modelmeta().custom_metadata_map, self.model.provider

    def run(self, spectra: np.ndarray, measured: np.ndarray | None):
        return self.model.run(spectra, measured)

    def run_regions(self, spectra: list[list[Region]]):
        return self.model.run_regions(spectra)


def connect(address: str) -> None:
    """Start a local Ray instance ("local") or join the cluster at `address`."""
    import ray

    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False)


def disconnect() -> None:
    import ray

    ray.shutdown()


class RayModel:
    """Same interface as LoadedModel (run, run_regions, metadata, provider)."""

    def __init__(self, path: Path, threads: int, actors: int = 1):
        import ray

        self.path = path
        actor = ray.remote(num_cpus=1)(_ModelActor)
        self.actors = [actor.remote(str(path), threads) for _ in range(max(1, actors))]
        props, provider = ray.get(self.actors[0].describe.remote())
        self.metadata = ModelMetadata.from_strings(props)
        self.provider = f"ray:{provider}"
        self._next = itertools.cycle(self.actors)

    def run(self, spectra: np.ndarray, measured: np.ndarray | None = None) -> dict[str, np.ndarray]:
        import ray

        return ray.get(next(self._next).run.remote(spectra, measured))

    def run_regions(self, spectra: list[list[Region]]) -> dict[str, np.ndarray]:
        import ray

        return ray.get(next(self._next).run_regions.remote(spectra))

    def close(self) -> None:
        """Release the actors (after a reload, or at shutdown)."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
