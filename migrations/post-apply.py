"""Re-create every function in sql/ after each migration run.

yoyo runs post-apply steps after the versioned migrations; the service's
`migrate` command runs them on every run (even when nothing was pending), so
editing a file in sql/ and migrating updates the function.
"""

from pathlib import Path

from yoyo import step

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

steps = [step(path.read_text()) for path in sorted(SQL_DIR.glob("*.sql"))]
