"""Checks on docker-compose.yml (no Docker engine needed).

compose-spec.json next to this file is the Compose Specification JSON schema
(compose-spec/compose-spec ``schema/compose-spec.json``, JSON Schema draft
2020-12, the current one with ``models``/``include``/``jobs``), copied verbatim
from ``check_jsonschema/builtin_schemas/vendor/compose-spec.json`` in the PyPI
wheel ``check-jsonschema==0.39.0``, which vendors it from upstream. Apache-2.0.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(schema):
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def db(compose) -> dict:
    return compose["services"]["db"]


@pytest.fixture(scope="module")
def app(compose) -> dict:
    return compose["services"]["app"]


def env(service: dict) -> dict[str, str]:
    """A service's environment as a dict (the spec allows a map or a list)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        out = {}
        for item in raw:
            key, _, value = item.partition("=")
            out[key] = value
        return out
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def test_schema_is_the_compose_spec(schema):
    assert schema["title"] == "Compose Specification"
    assert "2020-12" in schema["$schema"]


def test_compose_file_is_valid(validator, compose):
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors
    )


@pytest.mark.parametrize(
    "breakage",
    ["unknown_top_level_key", "ports_as_mapping", "bad_depends_on_condition"],
)
def test_schema_check_can_fail(validator, compose, breakage):
    broken = copy.deepcopy(compose)
    if breakage == "unknown_top_level_key":
        broken["servicez"] = broken["services"]
    elif breakage == "ports_as_mapping":
        broken["services"]["app"]["ports"] = {3000: 3000}
    else:
        broken["services"]["app"]["depends_on"]["db"]["condition"] = "service_ready"
    assert not validator.is_valid(broken)


def interpolated(value: str) -> str:
    """`value` as docker compose reads it with no variable set: ${NAME:-default} -> default."""
    return re.sub(r"\$\{[A-Z_]+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


ROLE_URLS = {  # the app's variable -> (role, the db's variable holding its password)
    "DATABASE_URL": ("ticket_allocation_api", "API_DB_PASSWORD"),
    "ADMIN_DATABASE_URL": ("ticket_allocation_admin", "ADMIN_DB_PASSWORD"),
    "MIGRATE_DATABASE_URL": ("ticket_allocation_owner", "OWNER_DB_PASSWORD"),
}
# Roles the db creates that the app does not log in as: people's psql login.
PEOPLE_ROLES = {"ticket_allocation_psql": "PSQL_DB_PASSWORD"}


def test_app_serves_administers_and_migrates_each_as_its_own_role(app, db):
    db_env = {k: interpolated(v) for k, v in env(db).items()}
    for variable, (role, password) in ROLE_URLS.items():
        url = urlsplit(interpolated(env(app)[variable]))
        assert url.scheme in ("postgresql", "postgres")
        assert url.hostname == "db"
        assert url.port in (None, 5432)
        assert url.path.lstrip("/") == "ticket_allocation"
        assert (url.username, url.password) == (role, db_env[password])
    # The superuser is not the owner: no SECURITY DEFINER function runs as a superuser.
    assert db_env["POSTGRES_USER"] not in {role for role, _ in ROLE_URLS.values()}


def test_db_creates_the_roles_and_database_on_first_start(compose, db):
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in db["volumes"]]
    assert any(m.startswith("./sql/server/roles.sql:/docker-entrypoint-initdb.d/") for m in mounts)
    (init,) = db["configs"]
    script = compose["configs"][init["source"]]["content"].replace("$$", "$")
    assert init["target"].startswith("/docker-entrypoint-initdb.d/")
    for role, password in [*ROLE_URLS.values(), *PEOPLE_ROLES.items()]:
        assert f"ALTER ROLE {role} PASSWORD" in script
        assert f"${password}" in script
    assert "CREATE DATABASE ticket_allocation OWNER ticket_allocation_owner" in script


def test_secrets_come_from_the_environment(app, db):
    assert re.fullmatch(r"\$\{ADMIN_TOKEN(:?-)?\}", env(app)["ADMIN_TOKEN"])
    for variable, (_, password) in ROLE_URLS.items():
        assert "${" + password in env(app)[variable]
        assert "${" + password in env(db)[password]
    assert "${POSTGRES_PASSWORD" in env(db)["POSTGRES_PASSWORD"]
    for password in PEOPLE_ROLES.values():
        assert "${" + password in env(db)[password]
        assert all(password not in value for value in env(app).values())  # the app never needs it


def test_app_healthcheck_asks_readyz(app):
    test = app["healthcheck"]["test"]
    assert "/readyz" in (test if isinstance(test, str) else " ".join(test))


def test_app_listens_on_all_interfaces_and_publishes_3000(app):
    assert env(app)["HOST"] == "0.0.0.0"
    assert env(app).get("PORT", "3000") == "3000"
    published = []
    for port in app["ports"]:
        if isinstance(port, dict):
            published.append((str(port.get("published")), str(port["target"])))
        else:
            host, _, container = str(port).rpartition(":")
            published.append((host.rpartition(":")[2], container.split("/")[0]))
    assert ("3000", "3000") in published


def test_app_is_built_from_repo(app):
    build = app["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert context in (".", "./")


def test_app_waits_for_healthy_db(app):
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app.get("restart") in ("always", "unless-stopped", "on-failure")


def test_db_has_pg_isready_healthcheck(db):
    test = db["healthcheck"]["test"]
    command = test if isinstance(test, str) else " ".join(test)
    assert "pg_isready" in command


def test_db_is_postgres_18_with_named_volume(compose, db):
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?postgres:(\d+)(?:[.\-].*)?", db["image"])
    assert match, db["image"]
    assert match.group(1) == "18"
    named = [
        (v["source"] if isinstance(v, dict) else v.split(":", 1)[0])
        for v in db.get("volumes", [])
    ]
    assert any(name in (compose.get("volumes") or {}) for name in named)
