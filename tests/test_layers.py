"""The package's layers (``[tool.importlinter]`` in pyproject.toml) hold.

Each layer imports only from the layers below it, so the package has no
import circle and no import running back up; a new module must be given its
place in the contract (it is exhaustive).
"""

from __future__ import annotations

import subprocess
import sys

from tests.liveserver import ROOT


def test_imports_follow_the_layers():
    lint = [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]
    result = subprocess.run(
        [*lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout
