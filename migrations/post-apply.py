"""Re-create every function in sql/ after each migration run, then grant them.

yoyo runs post-apply steps after the versioned migrations; the service's
`migrate` command runs them on every run (even when nothing was pending), so
editing a file in sql/ and migrating updates the function. privileges.sql
goes last: it grants EXECUTE on the functions the others create.
"""

from importlib.resources import files

from yoyo import step

# The package's copy of sql/ (the checkout's folder in an editable install);
# yoyo loads this file by its path, so it finds sql/ through the package.
SQL_DIR = files("service.sql")
PRIVILEGES = SQL_DIR / "privileges.sql"

functions = sorted(
    (path for path in SQL_DIR.iterdir() if path.name.endswith(".sql") and path != PRIVILEGES), key=lambda p: p.name
)
steps = [step(path.read_text()) for path in [*functions, PRIVILEGES]]
