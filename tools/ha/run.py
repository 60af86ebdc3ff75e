"""`make run-ha`: the HA topology of tests/ha, to try by hand.

A pg_auto_failover monitor and two nodes in .ha/ (git-ignored, made afresh each
time), the service on their multi-host URL at http://127.0.0.1:$PORT (3000),
and .ha/pg_autoctl, a wrapper with the cluster's environment, to fail over or
look at the state. Ctrl-C stops the service and the cluster.
"""

import os
import shutil
import signal
import subprocess
import sys

from service import embedded
from service.config import PROJECT_ROOT
from service.migrations import migrate

from .cluster import Cluster

FOLDER = PROJECT_ROOT / ".ha"
# Local trial on 127.0.0.1 only; the nodes trust 127.0.0.1 anyway (cluster.py).
PASSWORD = "try-ha-locally"


def write_wrapper(cluster: Cluster) -> None:
    """.ha/pg_autoctl: pg_autoctl with the cluster's PATH, XDG_* and PGDATA (the monitor), as postgres if root."""
    exports = " ".join(f"{name}={cluster.env[name]}" for name in ("PATH", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
                                                                  "XDG_RUNTIME_DIR"))
    runuser = "runuser -u postgres -- " if cluster.as_postgres else ""
    wrapper = FOLDER / "pg_autoctl"
    wrapper.write_text(f'#!/bin/sh\nexec {runuser}env {exports} PGDATA={cluster.monitor.pgdata} pg_autoctl "$@"\n')
    wrapper.chmod(0o755)


def main() -> int:
    shutil.rmtree(FOLDER, ignore_errors=True)
    FOLDER.mkdir()
    cluster = Cluster(FOLDER)
    service = None
    try:
        cluster.start()
        cluster.setup_roles(embedded.ROLES_SQL.read_text(), PASSWORD)
        migrate(cluster.url(embedded.OWNER_ROLE, PASSWORD))
        write_wrapper(cluster)
        env = {**os.environ, "DATABASE_URL": cluster.url(embedded.API_ROLE, PASSWORD),
               "ADMIN_DATABASE_URL": cluster.url(embedded.ADMIN_ROLE, PASSWORD),
               "PSQL_DATABASE_URL": cluster.url(embedded.PSQL_ROLE, PASSWORD),
               "MIGRATE_DATABASE_URL": cluster.url(embedded.OWNER_ROLE, PASSWORD), "LOG_FORMAT": "text"}
        service = subprocess.Popen([sys.executable, "-m", "service", "serve", "--no-migrate"], env=env)
        port = env.get("PORT", "3000")
        print(f"\nHA: primary {cluster.primary().address}, standby {cluster.other(cluster.primary()).address}, "
              f"service http://127.0.0.1:{port} (GET /readyz says where it writes). Fail over: "
              f".ha/pg_autoctl perform failover   State: .ha/pg_autoctl show state   Stop: Ctrl-C\n", flush=True)
        return service.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=60)
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
