"""tests/ha: one pg_auto_failover cluster for the module, and the service on its multi-host URL.

Without pg_autoctl these tests fail (never skip) with the command that installs it.
"""

import shutil
import tempfile
from pathlib import Path

import pytest

from service import embedded
from service.migrations import migrate
from tools.ha.cluster import INSTALL_HINT, Cluster, require_pg_autoctl

from ..conftest import ROLE_PASSWORD
from ..processes import Server, base_env


@pytest.fixture(scope="module")
def cluster():
    try:
        require_pg_autoctl()
    except RuntimeError:
        pytest.fail(INSTALL_HINT, pytrace=False)
    # Not under pytest's tmp_path (0700): the nodes run as the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="ticket-allocation-ha-"))
    cluster = Cluster(folder)
    try:
        cluster.start()
        cluster.setup_roles(embedded.ROLES_SQL.read_text(), ROLE_PASSWORD)
        migrate(cluster.url(embedded.OWNER_ROLE, ROLE_PASSWORD))
        yield cluster
    finally:
        cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def service(cluster, tmp_path_factory):
    env = {**base_env(), "WORKERS": "1", "LOG_FORMAT": "text",
           # The webhook receiver of test_failover.py listens on 127.0.0.1.
           "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "WEBHOOK_POLL_MS": "100", "WEBHOOK_TIMEOUT_MS": "2000",
           "DATABASE_URL": cluster.url(embedded.API_ROLE, ROLE_PASSWORD),
           "ADMIN_DATABASE_URL": cluster.url(embedded.ADMIN_ROLE, ROLE_PASSWORD),
           "MIGRATE_DATABASE_URL": cluster.url(embedded.OWNER_ROLE, ROLE_PASSWORD)}
    server = Server(env, tmp_path_factory.mktemp("ha") / "service.log")
    yield server
    assert server.stop() == 0
