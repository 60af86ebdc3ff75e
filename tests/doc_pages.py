"""The project's documents: README.md (the newcomer's page) and the reference pages of docs/. Tests
find each command, example and table on the page that holds it, so a page cannot drift from the code."""

from service.config import PROJECT_ROOT

DOCS_DIR = PROJECT_ROOT / "docs"


def page_names() -> list[str]:
    """README.md and every page of docs/, as paths of the checkout."""
    return ["README.md", *sorted(f"docs/{path.name}" for path in DOCS_DIR.glob("*.md"))]


def page(name: str) -> str:
    return (PROJECT_ROOT / name).read_text()


def page_with(marker: str) -> str:
    """The text of the one page that holds `marker` (a table's header, a section's heading)."""
    holders = [name for name in page_names() if marker in page(name)]
    assert len(holders) == 1, f"{marker!r} should be on exactly one page, found on {holders}"
    return page(holders[0])
