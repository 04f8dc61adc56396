"""Benchmark DocNodeBinding: apply throughput and squash time by document size.

Run with ``python benchmarks/bench_docnode.py`` from the repository root.
Prints numbers; asserts nothing. For each size (1k, 10k, 100k nodes) it
builds a snapshot, records a log of batches shaped like a live client's
(insert with state, delete, move, state set), then measures:

- apply: ordered operations + state keys applied per second;
- squash: deserialize + apply the log + serialize, for logs of 100 batches
  (the default ``SQUASH_THRESHOLD``) and 1000 batches.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure()
    django.setup()

from docsync.bindings.docnode import DocNodeBinding, DocNodeDoc  # noqa: E402
from docsync.bindings.docnode.model import Node  # noqa: E402

DOC_ID = "01jqz3f5d8a0000000000000r0"
NODES = {
    "doc": {"title": {"kind": "string", "default": ""}},
    "list": {"ordered": {"kind": "boolean", "default": False}},
    "p": {
        "text": {"kind": "string", "default": ""},
        "level": {"kind": "number", "default": 0},
        "done": {"kind": "boolean", "default": False},
    },
}
WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod".split()


def build_snapshot(size: int, rng: random.Random) -> list[Any]:
    """A root with lists of ten paragraphs each: ``size`` nodes in all."""
    lists = []
    for index in range(size // 11):
        children = [
            [f"p{index}.{k}", "p", {"text": f'"{rng.choice(WORDS)} {k}"', "level": str(k % 3)}]
            for k in range(10)
        ]
        lists.append([f"l{index}", "list", {}, children])
    return [DOC_ID, "doc", {"title": '"Benchmark"'}, lists]


class LogRecorder:
    """Makes batches the way a client would emit them, on its own live doc."""

    def __init__(self, binding: DocNodeBinding, doc: DocNodeDoc, rng: random.Random) -> None:
        self.binding, self.doc, self.rng = binding, doc, rng
        self.ids = [node_id for node_id in doc.nodes if node_id != doc.id]
        self.counter = 0

    def batches(self, count: int) -> list[Any]:
        out = []
        while len(out) < count:
            batch = self._one()
            if batch is not None:
                self.binding.apply_operations(self.doc, batch)
                out.append(batch)
        return out

    def _pick(self) -> Node:
        while True:
            index = self.rng.randrange(len(self.ids))
            node = self.doc.nodes.get(self.ids[index])
            if node is not None:
                return node
            self.ids[index] = self.ids[-1]  # forget a deleted id
            self.ids.pop()

    def _one(self) -> Any:
        roll = self.rng.random()
        if roll < 0.35:
            return self._insert()
        if roll < 0.5:
            return self._delete()
        if roll < 0.65:
            return self._move()
        node = self._pick()
        return [[], {node.id: self._state(node.type)}]

    def _insert(self) -> Any:
        anchor = self._pick()
        new = [f"x{self.counter + k}" for k in range(self.rng.randint(1, 3))]
        self.counter += len(new)
        self.ids.extend(new)
        prev_id = anchor.id
        next_id = anchor.next.id if anchor.next else 0
        parent = 0 if anchor.parent is self.doc.root else anchor.parent.id
        op = [0, [[node_id, "p"] for node_id in new], parent, prev_id, next_id]
        return [[op], {node_id: self._state("p") for node_id in new}]

    def _delete(self) -> Any:
        if len(self.doc.nodes) < 50:
            return None
        return [[[1, self._pick().id, 0]], {}]

    def _move(self) -> Any:
        node, target = self._pick(), self._pick()
        walk = target
        while walk is not None:
            if walk is node:
                return None  # a move into itself is not something a client emits
            walk = walk.parent
        if target.next is node:
            return None
        parent = 0 if target.parent is self.doc.root else target.parent.id
        next_id = target.next.id if target.next else 0
        return [[[2, node.id, 0, parent, target.id, next_id]], {}]

    def _state(self, node_type: str) -> dict[str, str]:
        if node_type == "list":
            return {"ordered": self.rng.choice(["0", "1"])}
        if node_type == "doc":
            return {"title": f'"{self.rng.choice(WORDS)}"'}
        text = f'"{self.rng.choice(WORDS)} {self.counter}"'
        return {"text": text, "level": str(self.counter % 5)}


def count_ops(batches: list[Any]) -> int:
    """Ordered operations plus state keys set: the units of work applied."""
    return sum(len(ordered) + sum(map(len, patch.values())) for ordered, patch in batches)


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench(size: int, log_size: int, repeat: int) -> None:
    rng = random.Random(size)
    binding = DocNodeBinding(doc_type="doc", nodes=NODES)
    snapshot = build_snapshot(size, rng)
    recorder = LogRecorder(binding, binding.deserialize(snapshot), rng)
    log = recorder.batches(log_size)

    def apply_all() -> None:
        doc = binding.deserialize(snapshot)
        start = time.perf_counter()
        for batch in log:
            binding.apply_operations(doc, batch)
        timings.append(time.perf_counter() - start)

    timings: list[float] = []
    for _ in range(repeat):
        apply_all()
    ops = count_ops(log)
    apply_s = min(timings)
    load_s = best_of(repeat, lambda: binding.deserialize(snapshot))
    doc = binding.deserialize(snapshot)
    dump_s = best_of(repeat, lambda: binding.serialize(doc))
    text_s = best_of(repeat, lambda: binding.dumps(doc))
    squash = {
        n: best_of(
            repeat, lambda n=n: binding.squash(snapshot, log[:n], doc_type="doc", doc_id=DOC_ID)
        )
        for n in (100, 1000)
        if n <= log_size
    }
    print(
        f"{size:>7} nodes | apply {ops / apply_s:>9,.0f} ops/s ({log_size / apply_s:>8,.0f} "
        f"batches/s) | load {load_s * 1000:7.1f} ms | serialize {dump_s * 1000:7.1f} ms "
        f"(+JS text {text_s * 1000:6.1f} ms) | "
        + " | ".join(f"squash {n} batches {t * 1000:7.1f} ms" for n, t in squash.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    parser.add_argument("--log", type=int, default=5_000, help="batches in the log")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, log of {args.log} batches, best of {args.repeat}")
    for size in args.sizes:
        bench(size, args.log, args.repeat)


if __name__ == "__main__":
    main()
