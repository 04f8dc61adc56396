"""Benchmark the Yjs binding: squash time, snapshot size and apply throughput.

Run from the repository root:  python benchmarks/bench_yjs.py [--sizes 1000,10000]

For each size N it builds, with pycrdt, one client's edit history in many
small updates (one transaction each):

  array   N items appended one by one
  map     N keys set one by one
  text    N characters typed 1-8 at a time at random places, with a few
          deletions along the way

and reports: one squash of all the updates (no snapshot), squashing them in
rounds of ROUND updates the way the server does (total, and the last round:
a snapshot of ~N nodes plus ROUND updates), a squash where every update
waits for a missing first one, pycrdt.merge_updates over all updates (flat
and grouped, for comparison), and how many updates per second apply_operations
takes. It prints numbers; it asserts only that the results are right.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure()
    django.setup()

import pycrdt  # noqa: E402
from pycrdt import Array, Doc, Map, Text  # noqa: E402

from docsync.bindings.yjs import YjsBinding  # noqa: E402

ROUND = 100
FLAT_MERGE_LIMIT = 20_000  # a flat merge_updates of more updates takes minutes


def record(doc: Doc) -> list[bytes]:
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    return updates


def make_array(n: int) -> tuple[list[bytes], Doc]:
    doc = Doc(client_id=1)
    updates = record(doc)
    items = doc.get("items", type=Array)
    for i in range(n):
        items.append(i)
    return updates, doc


def make_map(n: int) -> tuple[list[bytes], Doc]:
    doc = Doc(client_id=1)
    updates = record(doc)
    entries = doc.get("meta", type=Map)
    for i in range(n):
        entries[f"key{i}"] = i
    return updates, doc


def make_text(n: int) -> tuple[list[bytes], Doc]:
    doc = Doc(client_id=1)
    updates = record(doc)
    text = doc.get("content", type=Text)
    rnd = random.Random(0)
    length = 0
    while length < n:
        if length > 20 and rnd.random() < 0.1:
            start = rnd.randrange(length - 5)
            del text[start : start + rnd.randint(1, 5)]
        else:
            text.insert(rnd.randint(0, length), "abcdefgh"[: rnd.randint(1, 8)])
        length = len(text)
    return updates, doc


def timed(func: Callable[..., object], *args: object) -> tuple[float, object]:
    start = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - start, result


def squash(binding: YjsBinding, snapshot: bytes | None, updates: list[bytes]) -> bytes:
    return binding.squash(snapshot, updates, doc_type="bench", doc_id="bench")


def in_rounds(binding: YjsBinding, updates: list[bytes]) -> tuple[float, float, bytes]:
    """Squash ROUND updates at a time; return total time, last round's time, snapshot."""
    snapshot, total, last = None, 0.0, 0.0
    for start in range(0, len(updates), ROUND):
        last, snapshot = timed(squash, binding, snapshot, updates[start : start + ROUND])
        total += last
    return total, last, snapshot


def apply_rate(binding: YjsBinding, updates: list[bytes]) -> float:
    doc = binding.create("bench", "bench")
    seconds, _ = timed(lambda: [binding.apply_operations(doc, u) for u in updates])
    return len(updates) / seconds


def bench(binding: YjsBinding, kind: str, n: int, make) -> None:
    updates, source = make(n)
    expected = source.get_update()
    one, snapshot = timed(lambda: squash(binding, None, updates))
    assert snapshot == expected, f"{kind} {n}: squash differs from the source document"
    total, last, rounds = in_rounds(binding, updates)
    assert rounds == expected, f"{kind} {n}: squash in rounds differs"
    waiting, result = timed(lambda: squash(binding, None, updates[1:]))
    load, _ = timed(lambda: binding.deserialize(snapshot))
    grouped, _ = timed(lambda: binding.merge(list(updates)))
    flat = "skipped"
    if len(updates) <= FLAT_MERGE_LIMIT:
        flat = f"{timed(lambda: pycrdt.merge_updates(*updates))[0] * 1000:.0f} ms"
    size = sum(map(len, updates))
    print(
        f"{kind:5} N={n:>7,} updates={len(updates):>7,} ({size / 1024:,.0f} KiB) "
        f"snapshot={len(snapshot) / 1024:,.1f} KiB\n"
        f"      squash all: {one * 1000:8.1f} ms | in rounds of {ROUND}: "
        f"{total * 1000:8.1f} ms total, last round {last * 1000:6.2f} ms | "
        f"load snapshot {load * 1000:6.2f} ms\n"
        f"      all waiting: {waiting * 1000:8.1f} ms ({len(result) / 1024:,.1f} KiB) | "
        f"merge_updates flat {flat}, grouped {grouped * 1000:.0f} ms | "
        f"apply: {apply_rate(binding, updates):,.0f} updates/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    binding = YjsBinding()
    print(f"pycrdt {pycrdt.__version__ if hasattr(pycrdt, '__version__') else '?'}")
    for n in sizes:
        for kind, make in (("array", make_array), ("map", make_map), ("text", make_text)):
            bench(binding, kind, n, make)


if __name__ == "__main__":
    main()
