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
