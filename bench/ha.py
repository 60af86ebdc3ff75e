"""The cost of synchronous replication: the HTTP service on one node vs on the HA pair, same run.

    make bench-ha                           # or: .venv/bin/python -m bench.ha [--duration 15] [--concurrency 32]

One pg_auto_failover cluster (tools/ha/cluster.py: Debian's PostgreSQL 15, the tuned monitor, on
127.0.0.1) is built in a temporary folder, and the phases alternate, ROUNDS times: "single", the
standby stopped (the primary runs alone, pg_auto_failover's wait_primary: synchronous replication
off, commits are local), then "HA", the standby back (every commit waits for its flush). Both use the
same server, settings, database, service (the multi-host URL) and the wrk workloads of bench/run.py:
hot (every purchase on one option) and spread (a random one of 1,000). Alternating, on a machine
shared with other work, spreads the noise over both. Output: the ratio HA / single of the requests
served over all rounds (and per round) in bench/results/ha.md and ha.json.
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
from tools.ha.cluster import Cluster  # noqa: E402

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


def measure(wrk: str, service: Service, files: dict[str, Path], args, work: Path, phase: str, results: dict) -> None:
    for workload in WORKLOADS:
        log(f"{phase}: {workload}, {args.concurrency} connections, {args.duration} s")
        point = run_wrk(wrk, service, workload, args.concurrency, args.duration, files[workload], work)
        results.setdefault(workload, []).append(
            {k: point[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "status", "socket_errors")})


def total(points: list[dict], key: str) -> float:
    return sum(point[key] for point in points)


def not_201(point: dict) -> int:
    return point["requests"] - point["status"]["201"]


def write_results(results: dict, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "ha.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Synchronous replication cost: HA pair vs single node", "",
        f"{results['date']}; {results['rounds']} rounds, {results['concurrency']} connections, "
        f"{results['duration_s']} s per point; "
        "PostgreSQL 15 (Debian), pg_auto_failover, one service worker; all on one machine.", "",
        "| workload | single rps (mean) | HA rps (mean) | HA / single (each round) | single p99 ms (worst) | "
        "HA p99 ms (worst) | answers not 201 (single / HA) |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        single, ha = results["single"][workload], results["ha"][workload]
        rounds = ", ".join(f"{h['rps'] / s['rps']:.2f}" for s, h in zip(single, ha))
        lines.append(
            f"| {workload} | {total(single, 'rps') / len(single):.0f} | {total(ha, 'rps') / len(ha):.0f} | "
            f"**{total(ha, 'requests') / total(single, 'requests'):.2f}** ({rounds}) | "
            f"{max(p['p99_ms'] for p in single):.1f} | {max(p['p99_ms'] for p in ha):.1f} | "
            f"{sum(map(not_201, single))} / {sum(map(not_201, ha))} |")
    (output / "ha.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ha", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per point (10)")
    parser.add_argument("--rounds", type=int, default=3, help="single/HA alternations (3)")
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    folder = Path(tempfile.mkdtemp(prefix="ticket-allocation-bench-ha-"))
    work = folder / "work"
    cluster = Cluster(folder)
    service = None
    try:
        log("building the cluster: monitor, node1 and its standby node2")
        cluster.start()
        cluster.setup_roles(embedded.ROLES_SQL.read_text(), PASSWORD)
        owner_url = cluster.url(embedded.OWNER_ROLE, PASSWORD)
        migrate(owner_url)
        work.mkdir()
        files = seed_options(owner_url, work)
        os.environ["MIGRATE_DATABASE_URL"] = owner_url  # the service serves as the API role, migrates as the owner
        os.environ["ADMIN_DATABASE_URL"] = cluster.url(embedded.ADMIN_ROLE, PASSWORD)  # and administers as admin
        service = Service(cluster.url(embedded.API_ROLE, PASSWORD), work / "service.log")
        results = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "rounds": args.rounds,
                   "concurrency": args.concurrency, "duration_s": args.duration, "single": {}, "ha": {}}
        standby = cluster.nodes[1]
        for round_ in range(1, args.rounds + 1):
            cluster.stop_node(standby)
            cluster.wait_until(cluster.runs_alone, "the primary to run alone")
            measure(wrk, service, files, args, work, f"round {round_}, single (standby stopped)", results["single"])
            cluster.restart(standby)
            cluster.wait_until(cluster.is_healthy, "the standby to be synchronous again")
            measure(wrk, service, files, args, work, f"round {round_}, HA (synchronous standby)", results["ha"])
        write_results(results, args.output)
        return 0
    finally:
        if service is not None:
            service.stop()
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
