"""``mypy --strict`` with django-stubs passes on docsync/ (configured in pyproject.toml).

Part of the test suite so that a change that breaks the package's types
fails where the change is tested, not only in CI.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests.liveserver import ROOT
from tests.services import _skip_or_fail


def test_mypy_strict_passes():
    if (
        importlib.util.find_spec("mypy") is None
        or importlib.util.find_spec("mypy_django_plugin") is None
    ):
        _skip_or_fail(
            "mypy: mypy and django-stubs are not installed (pip install -r requirements-dev.txt)"
        )
    done = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (
        "mypy --strict found problems (fix them; a module under rework may be listed, "
        "with the reason, in pyproject.toml's [[tool.mypy.overrides]]):\n"
        f"{done.stdout}{done.stderr}"
    )
