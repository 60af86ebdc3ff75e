"""Before and after, in rounds: HTTP points of several checkouts beside pgbench, interleaved.

    .venv/bin/python -m bench.compare --checkout after=. --checkout before=/tmp/before \\
        --workloads spread,hot --concurrency 64 --rounds 4

On a machine shared with other work, one point of each is noise: this runs, every round and
workload, pgbench (bench/pgbench/*.sql, as bench/run.py does) then each checkout's service
(bench.run.http_point: a fresh database, the same checks), the checkouts in turn (reversed every
other round), and reports each round's HTTP ÷ pgbench and the median over the rounds. Every
database is a copy of one template migrated by this checkout: the checkouts differ in their
service only. Exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench import run


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", required=True, metavar="NAME=PATH",
                        help="a checkout to run (repeatable), e.g. after=. before=/tmp/before")
    parser.add_argument("--workloads", default="spread,hot", help="comma-separated bench/run.py workloads")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per point")
    args = parser.parse_args(argv)
    args.checkout = [(name, Path(path).resolve()) for name, _, path in (c.partition("=") for c in args.checkout)]
    args.workloads = [w for w in args.workloads.split(",") if w]
    if set(args.workloads) - set(run.WORKLOADS) or "get" in args.workloads:
        parser.error(f"choose workloads from {', '.join(w for w in run.WORKLOADS if w != 'get')}")
    return args


def options_file(work: Path, workload: str) -> Path:
    """The options wrk picks from (as bench/run.py writes them: a group of options a line for orders)."""
    n_options = run.WORKLOADS[workload][0]
    path = work / f"options-{workload}.txt"
    if run.is_orders(workload):
        path.write_text("".join(",".join(run.option_id(n) for n in range(first, first + run.ORDER_LINES)) + "\n"
                                for first in range(1, n_options + 1, run.ORDER_LINES)))
    else:
        path.write_text("".join(run.option_id(n) + "\n" for n in range(1, n_options + 1)))
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ticket-allocation-compare-"))
    server = run.start_embedded(work)
    ratios: dict[tuple[str, str], list[float]] = {}
    p99s: dict[tuple[str, str], list[float]] = {}
    ok = True
    try:
        databases = run.Databases(server.get_uri())
        databases.create_template()
        wrk, pgbench = run.ensure_wrk(), run.find_pgbench()
        files = {workload: options_file(work, workload) for workload in args.workloads}
        c = args.concurrency
        for n in range(args.rounds):
            for workload in args.workloads:
                url = databases.fresh(f"{workload}_sql_{n}".replace("-", "_"))
                if run.is_orders(workload):
                    run.add_group_quotas(url, run.WORKLOADS[workload][0])
                sql = run.run_pgbench(pgbench, url, workload, c, args.duration, work)
                databases.drop(url)
                line = [f"round {n + 1} {workload} @ {c}: pgbench {sql['tps']:.0f} tps, p99 {sql['p99_ms']:.0f} ms"]
                for name, checkout in (args.checkout if n % 2 == 0 else args.checkout[::-1]):
                    http, check = run.http_point(wrk, databases, workload, c, args.duration, files[workload], work,
                                                 checkout)
                    rate = http.get("checkouts_per_s", http["rps"])
                    ratios.setdefault((workload, name), []).append(rate / sql["tps"])
                    p99s.setdefault((workload, name), []).append(http["p99_ms"])
                    ok = ok and check["ok"] and not http["status"]["5xx"]
                    line.append(f"{name} {rate:.0f}/s, p99 {http['p99_ms']:.0f} ms, {rate / sql['tps']:.2f}x"
                                + ("" if check["ok"] else f" CHECK FAILED: {check['failures']}")
                                + (f" {http['status']['5xx']} 5xx" if http["status"]["5xx"] else ""))
                print("; ".join(line), flush=True)
        for (workload, name), values in ratios.items():
            print(f"{workload} @ {c} {name}: HTTP ÷ pgbench median {statistics.median(values):.2f} "
                  f"({', '.join(f'{v:.2f}' for v in values)}), p99 median {statistics.median(p99s[workload, name]):.0f} ms "
                  f"({', '.join(f'{v:.0f}' for v in p99s[workload, name])})", flush=True)
        return 0 if ok else 1
    finally:
        run.kill_all()
        server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
