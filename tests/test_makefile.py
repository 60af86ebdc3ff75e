"""The Makefile's bootstrap: `make run` installs what running needs, `make test` the test extras too."""

import shutil
import subprocess

from service.config import PROJECT_ROOT


def planned_commands(tmp_path, target: str) -> str:
    """What `make <target>` would run in a fresh checkout (make -n: printed, nothing run)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    result = subprocess.run(["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_installs_only_what_running_needs(tmp_path):
    commands = planned_commands(tmp_path, "run")
    assert "pip install --quiet -e '.[embedded]'" in commands
    assert "test]" not in commands and ",test" not in commands


def test_make_test_installs_the_test_extras(tmp_path):
    assert "pip install --quiet -e '.[embedded,test]'" in planned_commands(tmp_path, "test-fast")
