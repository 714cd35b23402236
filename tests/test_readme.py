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
