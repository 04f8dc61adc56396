"""What abuse costs: login guesses and retry storms against a live server.

    python benchmarks/bench_abuse.py [--server uvicorn] [--root CHECKOUT] [--seconds 3]

Starts a server (the end-to-end test settings: in-memory provider, tokens
``valid-<name>``) from ``--root`` (default: this checkout; point it at an
older checkout to compare) and prints, per second:

* CONNECT attempts with a bad token answered, on one socket and on 10 sockets
  of one address (each is an ``authenticate`` call, a database query in a
  real deployment);
* refused requests answered for one user retrying at once on 10 connections
  (different refusals: the per-user limiter, not the backoff);
* requests of one tab retrying a deleted document at once, as the official
  client does (the same refusal again and again: the backoff).

The load generator shares the machine with the server: compare runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.liveserver import free_port, wait_for_port  # noqa: E402
from tests.rawws import RawLiveClient  # noqa: E402
from tests.wsclient import auth, dumps  # noqa: E402

DOC = "01kbench000000000000000000"


def start(root: Path, server: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.e2e_settings", "PYTHONPATH": str(root)}
    if server == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", "--port", str(port)]
        cmd += ["--ws-per-message-deflate", "false", "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-m", "daphne", "-p", str(port), "-v", "0"]
    proc = subprocess.Popen(
        [*cmd, "tests.e2e_asgi:application"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc=proc)
    return proc


async def guesses(ws_url: str, sockets: int, seconds: float) -> float:
    answered = 0
    deadline = time.monotonic() + seconds

    async def guesser(n: int) -> None:
        nonlocal answered
        c = RawLiveClient(ws_url)
        await c.open()
        try:
            while time.monotonic() < deadline:
                await c.send("40" + dumps({**auth(f"m{n}"), "token": f"guess-{answered}"}))
                try:
                    await c.wait_connect_answer(max(deadline - time.monotonic(), 0.01))
                except TimeoutError:
                    break
                else:
                    answered += 1
        finally:
            await c.close()

    await asyncio.gather(*(guesser(n) for n in range(sockets)))
    return answered / seconds


async def storm(ws_url: str, tabs: int, seconds: float, same: bool) -> float:
    """Refused requests answered per second for one user retrying at once."""
    clients = []
    for n in range(tabs):
        c = RawLiveClient(ws_url)
        await c.connect(auth("stormy", client=f"tab-{n}-{time.monotonic()}"))
        clients.append(c)
    if same:
        pull = {"type": "doc", "docId": DOC, "operations": [], "clock": 0}
        await clients[0].call("sync", {**pull, "serializedDoc": [DOC, "doc", {}]})
        await clients[0].call("delete-doc", {"docId": DOC})
    answered = 0
    deadline = time.monotonic() + seconds

    async def retry(c: RawLiveClient) -> None:
        nonlocal answered
        n = 0
        while time.monotonic() < deadline:
            n += 1
            if same:
                request = ("sync", {**pull, "serializedDoc": None})
            else:
                request = (f"nope-{n}", {})
            try:
                await c.call(*request, timeout=max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                break
            answered += 1

    await asyncio.gather(*(retry(c) for c in clients))
    for c in clients:
        await c.close()
    return answered / seconds


async def measure(ws_url: str, seconds: float) -> None:
    # Each measurement from its own point of view: the storms first (they
    # connect with good tokens), the guessing last (it slows the address).
    print(
        f"  stuck tab retrying a deleted document: {await storm(ws_url, 1, seconds * 3, True):7.1f} requests/s"
    )
    print(
        f"  one user, 10 connections, refused:     {await storm(ws_url, 10, seconds, False):7.1f} answers/s"
    )
    print(
        f"  bad-token CONNECTs, 1 socket:          {await guesses(ws_url, 1, seconds):7.1f} guesses/s"
    )
    print(
        f"  bad-token CONNECTs, 10 sockets:        {await guesses(ws_url, 10, seconds):7.1f} guesses/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="uvicorn")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    port = free_port()
    proc = start(args.root.resolve(), args.server, port)
    try:
        print(f"{args.server} from {args.root.resolve()}:")
        asyncio.run(
            measure(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", args.seconds)
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


if __name__ == "__main__":
    main()
