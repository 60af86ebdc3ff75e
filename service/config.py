"""Settings, read once from the environment."""

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    # None means: start the embedded PostgreSQL and use it.
    database_url: str | None
    host: str
    port: int
    workers: int
    pool_size: int
    embedded_pgdata: Path
    # A PostgreSQL interval; None keeps the database's setting (default 24 hours).
    idempotency_key_ttl: str | None

    @classmethod
    def from_env(cls, env=os.environ) -> "Settings":
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            host=env.get("HOST", "127.0.0.1"),
            port=_int_setting(env, "PORT", 3000),
            # Half the CPUs: the other half is PostgreSQL's when it runs on this machine
            # (bench/: on 2 CPUs, 2 workers were no faster than 1, and split the coalescing).
            workers=_int_setting(env, "WORKERS", max(1, len(os.sched_getaffinity(0)) // 2)),
            pool_size=_int_setting(env, "DB_POOL_SIZE", 10),
            embedded_pgdata=Path(env.get("EMBEDDED_PGDATA", PROJECT_ROOT / ".pgdata")),
            idempotency_key_ttl=env.get("IDEMPOTENCY_KEY_TTL") or None,
        )


def _int_setting(env, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number; set it to e.g. {default}") from None
    if value < 1:
        raise SystemExit(f"{name}={raw!r} must be at least 1")
    return value


def redact(url: str) -> str:
    """The URL with its password replaced, fit for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
