"""Fuzzing every parser: random bytes, truncated and mutated real files, NaN/Inf and absurd axes.
Each case must end in regions or a ParseError, in bounded time, never another exception."""

import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REALXPS
from xpstream.daemon.parse import ParseError, parse_file
from xpstream.spectrum import regions_to_grid

SUFFIXES = [".vms", ".xml", ".xy", ".spe", ".txt", ".csv"]
SAMPLES = {
    ".vms": REALXPS / "cheminfo_perovskite_kratos.vms",
    ".xml": REALXPS / "pynx_PBTTT_specs.xml",
    ".xy": REALXPS / "pynx_MgFe2O4_small_specs.xy",
    ".spe": REALXPS / "pynx_SnO2_phi.spe",
    ".txt": REALXPS / "pynx_CuHHTP_scienta.txt",
    ".csv": REALXPS / "lg4x_PET_C1s.csv",
}
TIME_BOUND_S = 10.0
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def parse_within_bound(path):
    start = time.monotonic()
    try:
        parsed = parse_file(path)
    except ParseError as err:
        assert str(err).startswith(path.name), err  # the reason names the file
        parsed = None
    assert time.monotonic() - start < TIME_BOUND_S
    if parsed is not None:
        for region in parsed.regions:
            assert np.isfinite(region.counts).all() and np.isfinite(region.binding_energy_ev).all()
        assert np.isfinite(regions_to_grid(parsed.regions)).all()  # what the daemon does next


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=4096))
def test_random_bytes(tmp_path, suffix, data):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    parse_within_bound(path)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), cut=st.floats(0.0, 1.0))
def test_truncated_real_files(tmp_path, suffix, cut):
    data = SAMPLES[suffix].read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: int(len(data) * cut)])
    parse_within_bound(path)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), seed=st.integers(0, 2**32 - 1), n=st.integers(1, 20))
def test_mutated_real_files(tmp_path, suffix, seed, n):
    data = bytearray(SAMPLES[suffix].read_bytes())
    rng = np.random.default_rng(seed)
    for position in rng.integers(0, len(data), n):
        data[position] = int(rng.integers(0, 256))
    path = tmp_path / f"mutated{suffix}"
    path.write_bytes(bytes(data))
    parse_within_bound(path)


@FUZZ
@given(
    values=st.lists(
        st.sampled_from(["nan", "inf", "-inf", "1e308", "-1e308", "0", "1", "1e-320"]), min_size=3, max_size=30
    ),
    axis=st.sampled_from(["BE/eV", "KE/eV,hv=1486.6"]),
)
def test_nan_inf_and_absurd_values_in_text(tmp_path, values, axis):
    rows = [f"{280 + i * 0.1:.1f},{v}" for i, v in enumerate(values)]
    rows += [f"{v},{i}" for i, v in enumerate(values)]  # absurd energies too
    path = tmp_path / "values.csv"
    path.write_text(f"{axis}\n" + "\n".join(rows) + "\n")
    parse_within_bound(path)
