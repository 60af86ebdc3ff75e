"""The README's curl and psql examples work as printed."""

import re
import subprocess

import pytest

from service import embedded
from service.config import PROJECT_ROOT

from .processes import Server, served_env

README = (PROJECT_ROOT / "README.md").read_text()


def code_block(language: str, first_line_contains: str) -> str:
    for block in re.findall(rf"```{language}\n(.*?)```", README, re.S):
        if first_line_contains in block.splitlines()[0]:
            return block
    raise AssertionError(f"README has no ```{language} block starting with {first_line_contains!r}")


def expected_outputs(block: str) -> list[re.Pattern]:
    """The outputs the README shows in `# ` comments, "…" standing for anything."""
    shown = []
    for line in block.splitlines():
        if line.startswith("# {"):
            shown.append(line[2:])
        elif line.startswith("#  ") and shown:
            shown[-1] += " " + line[3:]
    return [re.compile(".*?".join(re.escape(part) for part in text.split("…"))) for text in shown]


@pytest.mark.process
def test_curl_examples(database_url, api_database_url, tmp_path):
    block = code_block("sh", "option=$(curl")
    server = Server(served_env(database_url, api_database_url), tmp_path / "server.log")
    try:
        script = block.replace("127.0.0.1:3000", f"127.0.0.1:{server.port}")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    shown = expected_outputs(block)
    assert len(shown) >= 8
    assert len(printed) == len(shown), printed
    for line, pattern in zip(printed, shown):
        assert pattern.fullmatch(line), (line, pattern.pattern)


def test_psql_examples(admin_database_url):
    block = code_block("sql", "create_ticket_option")
    result = subprocess.run(
        [str(embedded.psql_path()), admin_database_url, "-X"], input=block, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for line in block.splitlines():
        if line.startswith("-- ") and ":" in line and line[3:].split(":")[0].isupper():
            assert line[3:].strip() in result.stderr  # ERROR / DETAIL / HINT as printed
    assert "remaining: 98" in result.stderr
