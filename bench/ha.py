"""The cost of synchronous replication: the HTTP service on one node vs on the HA pair, same run.

    make bench-ha                           # or: .venv/bin/python -m bench.ha [--duration 15] [--concurrency 32]

One pg_auto_failover cluster (tests/ha/cluster.py: Debian's PostgreSQL 15, the tuned monitor, on
127.0.0.1) is built in a temporary folder. First its node1 runs alone (pg_auto_failover's "single":
no standby, commits are local), then node2 joins as the synchronous standby (every commit waits for
its flush). Both phases use the same server, settings, database, service (the multi-host URL) and wrk
workloads as bench/run.py: hot (every purchase on one option) and spread (a random one of 1,000).
Output: the ratios HA / single in bench/results/ha.md and ha.json. The single phase runs first, on
fewer rows: if anything, that flatters it slightly.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/ha.py`
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.run import ALLOCATION, N_OPTIONS, Service, ensure_wrk, log, run_wrk  # noqa: E402
from service import embedded  # noqa: E402
from service.migrations import migrate  # noqa: E402
from tests.ha.cluster import Cluster  # noqa: E402

PASSWORD = "bench-ha"  # the nodes trust 127.0.0.1 (cluster.py); a password for form's sake
WORKLOADS = {"hot": 1, "spread": N_OPTIONS}  # workload -> options it buys from


def seed_options(owner_url: str, work: Path) -> dict[str, Path]:
    """The options of each workload, written one id a line for the wrk scripts."""
    files = {}
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for workload, count in WORKLOADS.items():
            ids = [conn.execute("SELECT id FROM create_ticket_option(%s, %s, %s)",
                                (f"{workload} {n}", "", ALLOCATION)).fetchone()[0] for n in range(count)]
            files[workload] = work / f"options-{workload}.txt"
            files[workload].write_text("".join(f"{i}\n" for i in ids))
    return files


def measure(wrk: str, service: Service, files: dict[str, Path], args, work: Path, phase: str) -> dict:
    results = {}
    for workload in WORKLOADS:
        log(f"{phase}: {workload}, {args.concurrency} connections, {args.duration} s")
        point = run_wrk(wrk, service, workload, args.concurrency, args.duration, files[workload], work)
        results[workload] = {k: point[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "status", "socket_errors")}
    return results


def not_201(point: dict) -> int:
    return point["requests"] - point["status"]["201"]


def write_results(results: dict, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "ha.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Synchronous replication cost: HA pair vs single node", "",
        f"{results['date']}; {results['concurrency']} connections, {results['duration_s']} s per point; "
        "PostgreSQL 15 (Debian), pg_auto_failover, one service worker; all on one machine.", "",
        "| workload | single rps | HA rps | HA / single | single p99 ms | HA p99 ms | answers not 201 (single / HA) |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        single, ha = results["single"][workload], results["ha"][workload]
        lines.append(f"| {workload} | {single['rps']:.0f} | {ha['rps']:.0f} | {ha['rps'] / single['rps']:.2f} | "
                     f"{single['p99_ms']:.1f} | {ha['p99_ms']:.1f} | {not_201(single)} / {not_201(ha)} |")
    (output / "ha.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ha", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per point (15)")
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    folder = Path(tempfile.mkdtemp(prefix="ticket-allocation-bench-ha-"))
    work = folder / "work"
    cluster = Cluster(folder)
    service = None
    try:
        log("building the cluster: monitor and node1 alone")
        cluster.start(standby=False)
        cluster.setup_roles(embedded.ROLES_SQL.read_text(), PASSWORD)
        owner_url = cluster.url(embedded.OWNER_ROLE, PASSWORD)
        migrate(owner_url)
        work.mkdir()
        files = seed_options(owner_url, work)
        os.environ["MIGRATE_DATABASE_URL"] = owner_url  # the service serves as the API role, migrates as the owner
        service = Service(cluster.url(embedded.API_ROLE, PASSWORD), work / "service.log")
        results = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   "concurrency": args.concurrency, "duration_s": args.duration}
        results["single"] = measure(wrk, service, files, args, work, "single node")
        log("node2 joins as the synchronous standby")
        cluster.add_standby()
        results["ha"] = measure(wrk, service, files, args, work, "HA pair")
        write_results(results, args.output)
        return 0
    finally:
        if service is not None:
            service.stop()
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
