"""Load the DocNode golden vectors (``/work/shared/vectors/docnode``) for tests.

The folder is found next to the repository (``../shared/vectors/docnode``)
or through the ``DOCSYNC_DOCNODE_VECTORS`` environment variable.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

VECTOR_FILES = ("single.json", "concurrent.json", "edge.json")
ENV_VAR = "DOCSYNC_DOCNODE_VECTORS"


def vectors_dir() -> Path:
    """Where the vector files are expected (they may be absent)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared" / "vectors" / "docnode"


@cache
def load_cases(filename: str) -> list[dict[str, Any]]:
    """Return the cases of one vector file, or [] when it is absent."""
    path = vectors_dir() / filename
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    return data.get("cases", []) if isinstance(data, dict) else []


def vector_files() -> list[str]:
    """The three known files first, then any other ``*.json`` case file present."""
    folder = vectors_dir()
    if not folder.is_dir():
        return []
    others = sorted(p.name for p in folder.glob("*.json") if p.name not in VECTOR_FILES)
    return [name for name in VECTOR_FILES if (folder / name).is_file()] + others


def case_params() -> list[tuple[str, int]]:
    """(file, index) of every case in every present file."""
    return [
        (filename, index)
        for filename in vector_files()
        for index in range(len(load_cases(filename)))
    ]


def case_id(param: tuple[str, int]) -> str:
    filename, index = param
    return f"{filename.removesuffix('.json')}:{load_cases(filename)[index]['id']}"
