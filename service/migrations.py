"""Apply the versioned schema in migrations/ and re-create the functions in sql/."""

import logging

from yoyo import get_backend, read_migrations

from .config import PROJECT_ROOT
from .failover import primary_url

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"

log = logging.getLogger(__name__)


def yoyo_url(database_url: str) -> str:
    """yoyo names its driver in the scheme: postgresql+psycopg://..."""
    scheme, sep, rest = database_url.partition("://")
    if scheme not in ("postgres", "postgresql") or not sep:
        raise SystemExit(f"DATABASE_URL must start with postgresql://, got {scheme}://")
    return f"postgresql+psycopg://{rest}"


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations, then the sql/ functions; returns the ids applied.

    yoyo's lock makes concurrent runs (two servers starting at once) take turns.
    Unlike `yoyo apply`, the post-apply step runs even when nothing was pending,
    so an edited function in sql/ is updated by the next migrate.
    """
    backend = get_backend(yoyo_url(primary_url(database_url)))  # yoyo takes one host: the primary
    migrations = read_migrations(str(MIGRATIONS_DIR))
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
