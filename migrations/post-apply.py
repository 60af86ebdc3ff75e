"""Re-create every function in sql/ after each migration run, then grant them.

yoyo runs post-apply steps after the versioned migrations; the service's
`migrate` command runs them on every run (even when nothing was pending), so
editing a file in sql/ and migrating updates the function. privileges.sql
goes last: it grants EXECUTE on the functions the others create.
"""

from pathlib import Path

from yoyo import step

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
PRIVILEGES = SQL_DIR / "privileges.sql"

functions = sorted(path for path in SQL_DIR.glob("*.sql") if path != PRIVILEGES)
steps = [step(path.read_text()) for path in [*functions, PRIVILEGES]]
