"""Apply the versioned schema in migrations/ and re-create the functions in sql/."""

import logging
from importlib.resources import files

from yoyo import get_backend, read_migrations
from yoyo.migrations import MigrationList

from .failover import primary_url

# The package's copy of migrations/ (the checkout's folder in an editable install).
MIGRATIONS_DIR = files("service.schema_migrations")
# What makes the folder a package; yoyo would take it for a migration.
NOT_A_MIGRATION = "__init__"

log = logging.getLogger(__name__)


def yoyo_url(database_url: str) -> str:
    """yoyo names its driver in the scheme: postgresql+psycopg://..."""
    scheme, sep, rest = database_url.partition("://")
    if scheme not in ("postgres", "postgresql") or not sep:
        raise SystemExit(f"DATABASE_URL must start with postgresql://, got {scheme}://")
    return f"postgresql+psycopg://{rest}"


def shipped_migrations() -> MigrationList:
    """The migrations (and post-apply step) shipped with this code."""
    migrations = read_migrations(str(MIGRATIONS_DIR))
    return MigrationList([m for m in migrations if m.id != NOT_A_MIGRATION], migrations.post_apply)


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations, then the sql/ functions; returns the ids applied.

    yoyo's lock makes concurrent runs (two servers starting at once) take turns.
    Unlike `yoyo apply`, the post-apply step runs even when nothing was pending,
    so an edited function in sql/ is updated by the next migrate.
    """
    backend = get_backend(yoyo_url(primary_url(database_url)))  # yoyo takes one host: the primary
    migrations = shipped_migrations()
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations_only(pending)
            backend.run_post_apply(migrations)
    finally:
        backend.connection.close()
    applied = [m.id for m in pending]
    log.info("migrations applied: %s; functions from sql/ re-created", ", ".join(applied) or "none pending")
    return applied
