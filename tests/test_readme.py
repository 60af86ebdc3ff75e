"""The curl and psql examples of README.md and docs/ work as printed."""

import re
import subprocess

import pytest

from service import embedded

from .doc_pages import page, page_names
from .processes import Server, served_env

# (page, a word of the block's first line, how many outputs it shows at least)
CURL_EXAMPLES = [
    ("README.md", "# Create a ticket option", 5),
    ("docs/http-api.md", "option=$(curl", 8),
    ("docs/holds-and-orders.md", "id=$(curl", 4),
]
PSQL_EXAMPLES = [("README.md", "create_ticket_option"), ("docs/sql-api.md", "create_ticket_option")]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def code_block(name: str, language: str, first_line_contains: str) -> str:
    for block in code_blocks(page(name), language):
        if first_line_contains in block.splitlines()[0]:
            return block
    raise AssertionError(f"{name} has no ```{language} block starting with {first_line_contains!r}")


def expected_outputs(block: str) -> list[re.Pattern]:
    """The outputs a block shows in `# ` comments, "…" standing for anything."""
    shown = []
    for line in block.splitlines():
        if line.startswith("# {"):
            shown.append(line[2:])
        elif line.startswith("#  ") and shown:
            shown[-1] += " " + line[3:]
    return [re.compile(".*?".join(re.escape(part) for part in text.split("…"))) for text in shown]


@pytest.mark.process
@pytest.mark.parametrize(("name", "first_line", "at_least"), CURL_EXAMPLES)
def test_curl_examples(database_url, api_database_url, tmp_path, name, first_line, at_least):
    block = code_block(name, "sh", first_line)
    server = Server(served_env(database_url, api_database_url), tmp_path / "server.log")
    try:
        script = block.replace("127.0.0.1:3000", f"127.0.0.1:{server.port}")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    shown = expected_outputs(block)
    assert len(shown) >= at_least
    assert len(printed) == len(shown), printed
    for line, pattern in zip(printed, shown):
        assert pattern.fullmatch(line), (line, pattern.pattern)


def test_every_example_against_the_server_is_run():
    """A new curl example on any page must join CURL_EXAMPLES, or it could show what the API no longer says."""
    run = {(name, code_block(name, "sh", first_line)) for name, first_line, _ in CURL_EXAMPLES}
    shown = {(name, block) for name in page_names() for block in code_blocks(page(name), "sh")
             if "127.0.0.1:3000/" in block}
    assert shown == run


@pytest.mark.parametrize(("name", "first_line"), PSQL_EXAMPLES)
def test_psql_examples(admin_database_url, name, first_line):
    block = code_block(name, "sql", first_line)
    result = subprocess.run(
        [str(embedded.psql_path()), admin_database_url, "-X"], input=block, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    printed = [line[3:].strip() for line in block.splitlines()
               if line.startswith("-- ") and ":" in line and line[3:].split(":")[0].isupper()]
    assert any(line.startswith("ERROR:") for line in printed)
    for line in printed:
        assert line in result.stderr  # ERROR / DETAIL / HINT as printed
    assert "remaining: 98" in result.stderr
