"""A rolling deploy under load: drain time, reconnect spread, acknowledged operations lost.

    python benchmarks/bench_drain.py [--redis-url redis://127.0.0.1:6379/9]
        [--database-url postgres://postgres@127.0.0.1:5432/test]
        [--server uvicorn|daphne] [--writers 30] [--documents 6] [--window 10]
        [--plain]

Starts three server processes (``tests.e2e_asgi_drain``: the test application
in ``docsync.lifespan.GracefulDrain``) on the ORM provider and channels-redis,
lets ``--writers`` clients sync continuously (one edit every 0.1 s each,
spread over the processes), then SIGTERMs each process in turn, starts it
again, and waits for every writer to be back (``tests.rolling``). A writer
whose transport drops waits what the official client waits (0.5-1.5 s) and
reconnects to another process. ``--plain`` serves the application without
``GracefulDrain``, for comparison. Prints one JSON object:

- ``drain_s``: for each process, seconds from SIGTERM to its exit;
- ``drop_after_sigterm_s``: when the transports were dropped (min/p50/max
  seconds after SIGTERM): spread over ``DRAIN_WINDOW``;
- ``reconnect_s``: seconds from a drop to that client's ``identity`` on
  another process (min/p50/max), the client's own wait included;
- ``back_after_sigterm_s``: for each restart, seconds from SIGTERM until its
  last client was back;
- ``acked_ops`` / ``acked_ops_lost`` / ``duplicated``: operations acknowledged
  to a writer, those of them no reader finds afterwards (must be 0), and
  operations stored twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.rolling import Cluster, rolling_restart  # noqa: E402


def spread(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {"min": 0.0, "p50": 0.0, "max": 0.0}
    return {
        "min": round(values[0], 3),
        "p50": round(values[len(values) // 2], 3),
        "max": round(values[-1], 3),
    }


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict:
    app = "tests.e2e_asgi:application" if args.plain else "tests.e2e_asgi_drain:application"
    cluster = Cluster(env, n=args.processes, server=args.server, app=app).start()
    try:
        rolled = await rolling_restart(
            cluster,
            writers_n=args.writers,
            docs_n=args.documents,
            window=args.window,
            settle=args.settle,
            bound=args.window + 30,
        )
    finally:
        cluster.stop()
    return {
        "server": args.server,
        "drain": not args.plain,
        "processes": args.processes,
        "writers": args.writers,
        "documents": args.documents,
        "drain_window_s": args.window,
        "drain_s": [round(s, 2) for s in rolled.drain_seconds],
        "exit_status": rolled.exit_status,
        "drops": len(rolled.drop_offsets()),
        "drop_after_sigterm_s": spread(rolled.drop_offsets()),
        "reconnect_s": spread(rolled.reconnect_seconds()),
        "back_after_sigterm_s": [round(s, 2) for s in rolled.back_after_sigterm()],
        "acked_ops": len(rolled.acked()),
        "acked_ops_lost": len(rolled.lost()),
        "duplicated": rolled.duplicated(),
        "tracebacks": cluster.output().count("Traceback"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--writers", type=int, default=30)
    parser.add_argument("--documents", type=int, default=6)
    parser.add_argument("--window", type=float, default=10.0, help="DRAIN_WINDOW, seconds")
    parser.add_argument(
        "--plain", action="store_true", help="without GracefulDrain (what the server does alone)"
    )
    parser.add_argument("--settle", type=float, default=2.0, help="seconds of load between")
    args = parser.parse_args()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e_settings",
        "E2E_REDIS_URL": args.redis_url,
        "E2E_DATABASE_URL": args.database_url,
        "E2E_PROVIDER": "docsync.providers.orm.ORMProvider",
        "E2E_BINDINGS": json.dumps({"doc": "tests.bindings.ListBinding"}),
        "E2E_SQUASH_THRESHOLD": "50",
        "E2E_DOCSYNC": json.dumps({"DRAIN_WINDOW": args.window}),
    }
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    print(json.dumps(asyncio.run(run(args, env)), indent=2))


if __name__ == "__main__":
    # Stop the servers we started (finally blocks) when killed by timeout(1).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
