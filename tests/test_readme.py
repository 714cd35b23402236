"""The README's set-up section is what CI runs."""

import re

from tests.conftest import REPO


def test_ci_runs_the_two_readme_setup_commands():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()
    assert len(commands) == 2
    ci = (REPO / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci, command


def test_the_runtime_is_one_extra_so_gpu_hosts_get_the_cuda_build_alone():
    """Installing [gpu] must not pull the CPU onnxruntime beside onnxruntime-gpu (both provide
    the `onnxruntime` module): neither is a base requirement."""
    from importlib.metadata import requires

    requirements = requires("xpstream")
    base = [r for r in requirements if "extra ==" not in r]
    assert not [r for r in base if r.startswith("onnxruntime")]
    assert any(r.startswith("onnxruntime>=") and 'extra == "cpu"' in r for r in requirements)
    assert any(r.startswith("onnxruntime-gpu") and 'extra == "gpu"' in r for r in requirements)
    assert not [r for r in requirements if r.startswith("onnxruntime>=") and 'extra == "gpu"' in r]


def test_serving_installs_no_training_or_vendor_stack():
    """The first set-up command's venv stays small: torch, scipy, h5py and pynxtools-xps (with
    pandas and HDF5) come only with the `train` and `vendor` extras."""
    from importlib.metadata import requires

    requirements = requires("xpstream")
    base = {r.split(">")[0].split("=")[0].split(";")[0].strip() for r in requirements if "extra ==" not in r}
    assert not base & {"torch", "scipy", "h5py", "pynxtools-xps", "pandas"}
    assert any(r.startswith("pynxtools-xps") and 'extra == "vendor"' in r for r in requirements)
