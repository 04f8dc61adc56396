"""Node.js scripts for the tests, with their npm packages in tests/.node_cache."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.services import _skip_or_fail

NODE_SOURCE = Path(__file__).parent / "yjs_node"
NODE_CACHE = Path(__file__).parent / ".node_cache"
PACKAGES = ("yjs", "socket.io-client")  # tests/yjs_node/package.json


def node_script(name: str) -> Path:
    """``tests/yjs_node/<name>`` ready to run with its packages installed.

    Skips (fails in CI) when node/npm are missing or the install fails.
    """
    if not shutil.which("node") or not shutil.which("npm"):
        _skip_or_fail("Node.js: node and npm are needed to run the JavaScript yjs library")
    NODE_CACHE.mkdir(exist_ok=True)
    for file in ("package.json", name):
        shutil.copyfile(NODE_SOURCE / file, NODE_CACHE / file)
    if not all((NODE_CACHE / "node_modules" / package).is_dir() for package in PACKAGES):
        try:
            install = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--silent"],
                cwd=NODE_CACHE,
                capture_output=True,
                text=True,
                timeout=180,
            )
        except subprocess.TimeoutExpired:
            _skip_or_fail(f"Node.js: npm install of {', '.join(PACKAGES)} timed out (offline?)")
        if install.returncode:
            _skip_or_fail(
                f"Node.js: npm install of {', '.join(PACKAGES)} failed (offline?): "
                + install.stderr.strip()[-300:]
            )
    return NODE_CACHE / name
