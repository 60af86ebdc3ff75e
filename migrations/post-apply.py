"""Re-create every function in sql/ after each migration run, drop the ones sql/ no longer
defines, then grant them.

yoyo runs post-apply steps after the versioned migrations; the service's `migrate` command runs
them on every run (even when nothing was pending), so editing a file in sql/ and migrating
updates the function. The files are applied in the order sql/load.sql lists them, privileges.sql
last. yoyo runs all these steps in one transaction: a migrate that fails changes nothing.
"""

import re
from importlib.resources import files

from yoyo import step

# The package's copy of sql/ (the checkout's folder in an editable install);
# yoyo loads this file by its path, so it finds sql/ through the package.
SQL_DIR = files("service.sql")
LOAD_ORDER = SQL_DIR / "load.sql"
PRIVILEGES = "privileges.sql"


def load_order() -> list:
    """The files of sql/ as sql/load.sql lists them (its `\\ir file` lines); refuses a file of sql/
    it does not list (its functions would be dropped), or privileges.sql anywhere but last."""
    listed = re.findall(r"^\\ir (\S+)\s*$", LOAD_ORDER.read_text(), flags=re.MULTILINE)
    on_disk = sorted(p.name for p in SQL_DIR.iterdir() if p.name.endswith(".sql") and p.name != LOAD_ORDER.name)
    if sorted(listed) != on_disk or listed[-1:] != [PRIVILEGES]:
        raise RuntimeError(
            f"sql/load.sql must list every file of sql/ once, {PRIVILEGES} last: it lists {listed}, sql/ holds "
            f"{on_disk}")
    return [SQL_DIR / name for name in listed]


# Each function of api and ticket_allocation as it stands before sql/ is applied: CREATE OR
# REPLACE writes a new row version (xmin) even for an unchanged function, so those whose row is
# still this one were not (re)created by this run.
BEFORE = """
CREATE TEMP TABLE functions_before_post_apply ON COMMIT DROP AS
SELECT p.oid, p.xmin AS row_version
FROM pg_proc p
WHERE p.pronamespace IN ('api'::regnamespace, 'ticket_allocation'::regnamespace)
  AND p.proowner = current_user::regrole
"""

# Drops the functions this run did not (re)create: removed from sql/, or an old overload of one
# whose arguments changed (a changed result type still needs its DROP in a migration: CREATE OR
# REPLACE refuses it). DROP without CASCADE: a function the schema depends on (a CHECK's rule,
# created by a migration, like name_problem) stays. Before privileges.sql, which grants by name.
DROP_STALE = """
DO $$
DECLARE
    stale record;
    dropped integer;
BEGIN
    LOOP  -- again while a pass drops something: a stale function may need another one
        dropped := 0;
        FOR stale IN
            SELECT p.oid::regprocedure AS routine, p.prokind
            FROM pg_proc p
            JOIN functions_before_post_apply b ON b.oid = p.oid AND b.row_version = p.xmin
            ORDER BY p.oid
        LOOP
            BEGIN
                EXECUTE format('DROP %s %s', CASE stale.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'ROUTINE' END,
                               stale.routine);
                dropped := dropped + 1;
            EXCEPTION WHEN dependent_objects_still_exist THEN
                NULL;  -- the schema needs it: it stays
            END;
        END LOOP;
        EXIT WHEN dropped = 0;
    END LOOP;
END
$$
"""

*functions, privileges = load_order()
steps = [step(BEFORE), *(step(path.read_text()) for path in functions), step(DROP_STALE), step(privileges.read_text())]
