import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REALXPS = SHARED / "realxps"


@pytest.fixture(scope="session")
def library():
    from xpstream.train.library import load_library

    return load_library()


def draw(library, n=512, seed=0, **settings):
    """(generator, batch) of n mixtures with the given MixtureSettings fields."""
    from xpstream.train.mixtures import MixtureGenerator, MixtureSettings

    generator = MixtureGenerator(library, MixtureSettings(**settings), seed=seed)
    return generator, generator.batch(n, np.random.default_rng(seed))


def run_cli(*args, check=True, timeout=300):
    """Run the installed `xpstream` command in a subprocess; returns CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-m", "xpstream", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"xpstream {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
