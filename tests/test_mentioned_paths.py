"""Every file or folder of the checkout that a comment or a document (README.md, docs/*.md) names exists: a path
mentioned after a rename or a removal misleads its reader."""

import re
import subprocess

from service.config import PROJECT_ROOT

from .doc_pages import page_names

# A path of the checkout, as the code and docs write them: sql/holds.sql, tests/sql/, bench/run.py.
# Not one inside a URL or another path (/docs/assets/... is a route), nor a pattern (sql/*.sql).
MENTIONED_PATH = re.compile(r"(?<![\w/.-])(?:sql|service|tests|migrations|bench|docs|tools|\.ci)/[\w./-]*\w")
# Benchmark history records the layout of its day.
HISTORY = "bench/results/"


def tracked_text_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    return [name for name in listed.stdout.splitlines()
            if not name.startswith(HISTORY) and name.endswith((".py", ".sql", ".md", ".yaml", ".yml", ".toml", ".sh"))
            or name in ("Makefile", "Dockerfile") or name.startswith(".ci/")]


def test_every_path_mentioned_in_the_code_and_docs_exists():
    files = tracked_text_files()
    assert "sql/holds.sql" in files and "README.md" in files  # the walk sees the code and the docs
    assert set(page_names()) <= set(files), "a page of docs/ is not tracked, so not walked"
    missing = sorted({f"{name}: {path}" for name in files
                      for path in MENTIONED_PATH.findall((PROJECT_ROOT / name).read_text(errors="replace"))
                      if not (PROJECT_ROOT / path).exists()})
    assert missing == []
