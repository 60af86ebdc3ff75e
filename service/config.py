"""Settings, read once from the environment."""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .destinations import Network, parse_networks

# The folder holding the package: the checkout when running from one (make run,
# make test, an editable install); site-packages in an installed wheel.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The first is the default.
LOG_FORMATS = ("json", "text")
# A Cache-Control value goes out as is: printable ASCII, no surrounding spaces.
CACHE_CONTROL_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]{0,198}[\x21-\x7e])?")
# One second: an on-sale page polled by thousands is read from the database at most once a
# second per cache in front of it, and what it shows is at most a second old.
DEFAULT_CACHE_CONTROL = "max-age=1"


# Environment variable -> PostgreSQL setting of the service's connections.
DATABASE_SETTINGS_BY_ENV = {
    "DB_LOCK_TIMEOUT": "lock_timeout",  # the API role's default: 1s
    "DB_STATEMENT_TIMEOUT": "statement_timeout",  # the API role's default: 5s
}


@dataclass(frozen=True)
class WebhookSettings:
    """How a server process delivers webhooks (service/webhooks.py). The defaults here are the
    environment's too (from_env)."""
    # Destination networks allowed besides public addresses (WEBHOOK_ALLOWED_NETWORKS).
    allowed_networks: tuple[Network, ...] = ()
    # Seconds to connect, and to get the answer's status line (WEBHOOK_TIMEOUT_MS).
    timeout: float = 10.0
    # Delivery slots per server process (WEBHOOK_CONCURRENCY); see "Fair shares" in service/webhooks.py.
    concurrency: int = 4
    # Seconds between polls when nothing is due (WEBHOOK_POLL_MS).
    poll_interval: float = 0.5
    # False: this process delivers nothing (e.g. a read-only replica of the service).
    enabled: bool = True

    @classmethod
    def from_env(cls, env) -> "WebhookSettings":
        defaults = cls()
        return cls(
            allowed_networks=parse_networks(env.get("WEBHOOK_ALLOWED_NETWORKS", "")),
            timeout=_int_setting(env, "WEBHOOK_TIMEOUT_MS", round(defaults.timeout * 1000)) / 1000,
            concurrency=_int_setting(env, "WEBHOOK_CONCURRENCY", defaults.concurrency),
            poll_interval=_int_setting(env, "WEBHOOK_POLL_MS", round(defaults.poll_interval * 1000)) / 1000,
        )

    @property
    def lease(self) -> float:
        """Seconds an attempt is the claiming worker's: longer than the attempt can take."""
        return 2 * self.timeout + 5


@dataclass(frozen=True)
class Settings:
    # None means: start the embedded PostgreSQL and use it (`serve` then hands create_app
    # these settings with the embedded server's URLs: service/__main__.py).
    database_url: str | None
    # The role that runs migrations (owns the schema); None: database_url's.
    migrate_database_url: str | None
    # The role admin calls run as, after the admin token is checked; None: database_url's.
    admin_database_url: str | None
    # The login `psql` opens for people (the psql role); None: database_url's server and
    # database as ticket_allocation_psql, without a password (psql asks for it).
    psql_database_url: str | None
    host: str
    port: int
    workers: int
    # Connections in each worker's pool of buyers (DB_POOL_SIZE).
    pool_size: int
    # Seconds a request may wait for a free connection before it is answered 503: under a
    # burst beyond capacity, a fast "retry" beats a hang.
    pool_timeout: float
    embedded_pgdata: Path
    # None: the admin routes are open (the server warns at start).
    admin_token: str | None
    # Bearer tokens for the API routes; empty: they are open (the server warns at start).
    api_tokens: tuple[str, ...]
    # Seconds a client may take to send a request body (then 408), and that a SIGTERM
    # waits for requests in progress before cancelling them.
    body_read_timeout: float
    shutdown_timeout: float
    # PostgreSQL settings for the service's connections (lock_timeout, ...);
    # what is not set here comes from the role's or database's defaults.
    database_settings: dict[str, str]
    # "json" (one object a line, for log tooling) or "text" (for humans).
    log_format: str
    # Webhook delivery (WEBHOOK_ALLOWED_NETWORKS, WEBHOOK_TIMEOUT_MS, WEBHOOK_CONCURRENCY, WEBHOOK_POLL_MS).
    webhooks: WebhookSettings
    # The Cache-Control of cacheable reads (service/responses.py), e.g. "max-age=1" or "no-store".
    cache_control: str = DEFAULT_CACHE_CONTROL

    @property
    def admin_url(self) -> str | None:
        """The URL admin calls (and the background tasks) connect with: admin_database_url, else database_url."""
        return self.admin_database_url or self.database_url

    @classmethod
    def from_env(cls, env=os.environ) -> "Settings":
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            migrate_database_url=env.get("MIGRATE_DATABASE_URL") or None,
            admin_database_url=env.get("ADMIN_DATABASE_URL") or None,
            psql_database_url=env.get("PSQL_DATABASE_URL") or None,
            host=env.get("HOST", "127.0.0.1"),
            port=_int_setting(env, "PORT", 3000),
            # Half the CPUs: the other half is PostgreSQL's when it runs on this machine
            # (bench/: on 2 CPUs, 2 workers were no faster than 1, and split the coalescing).
            workers=_int_setting(env, "WORKERS", max(1, len(os.sched_getaffinity(0)) // 2)),
            pool_size=_int_setting(env, "DB_POOL_SIZE", 10),
            pool_timeout=_int_setting(env, "DB_POOL_TIMEOUT_MS", 1000) / 1000,
            admin_token=env.get("ADMIN_TOKEN") or None,
            api_tokens=tuple(token.strip() for token in env.get("API_TOKENS", "").split(",") if token.strip()),
            body_read_timeout=_int_setting(env, "BODY_READ_TIMEOUT_MS", 10_000) / 1000,
            shutdown_timeout=_int_setting(env, "SHUTDOWN_TIMEOUT_MS", 10_000) / 1000,
            embedded_pgdata=Path(env.get("EMBEDDED_PGDATA") or default_pgdata(env)),
            database_settings={
                setting: env[name] for name, setting in DATABASE_SETTINGS_BY_ENV.items() if env.get(name)
            },
            log_format=_choice_setting(env, "LOG_FORMAT", LOG_FORMATS),
            webhooks=WebhookSettings.from_env(env),
            cache_control=_cache_control_setting(env),
        )


def default_pgdata(env) -> Path:
    """.pgdata in the checkout when running from one; else (an installed wheel)
    a per-user folder, as site-packages is no place for data."""
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / ".pgdata"
    data_home = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "ticket-allocation" / "pgdata"


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


def _choice_setting(env, name: str, choices: tuple[str, ...]) -> str:
    """The setting, one of `choices`; the first when unset."""
    value = env.get(name) or choices[0]
    if value not in choices:
        raise SystemExit(f"{name}={value!r} must be one of: {', '.join(choices)}")
    return value


def _cache_control_setting(env) -> str:
    value = env.get("CACHE_CONTROL") or DEFAULT_CACHE_CONTROL
    if not CACHE_CONTROL_VALUE.fullmatch(value):
        raise SystemExit(f"CACHE_CONTROL={value!r} must be a Cache-Control header value (printable ASCII, at most "
                         f"200 characters), e.g. {DEFAULT_CACHE_CONTROL} or no-store")
    return value


def redact(url: str) -> str:
    """The URL with its password replaced, fit for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
