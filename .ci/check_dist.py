"""Fail when the built sdist or wheel misses a file of the package.

Usage: python .ci/check_dist.py DIST_DIR

Every git-tracked file under docsync/ must be in the wheel (a package folder
without ``__init__.py`` or a template outside ``package-data`` is left out
silently by the build), and in the sdist with the project's top-level files.
The wheel's metadata must name the distribution, version and license.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "django_docsync"
SDIST_EXTRA = {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"}


def tracked_package_files() -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", "docsync"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return {line for line in out.splitlines() if line and (ROOT / line).is_file()}


def one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    if len(found) != 1:
        sys.exit(f"expected one {pattern} in {dist}, found {[p.name for p in found]}")
    return found[0]


def main(dist: Path) -> int:
    sys.path.insert(0, str(ROOT))
    from docsync import __version__

    wanted = tracked_package_files()
    problems: list[str] = []

    wheel = one(dist, f"{NAME}-{__version__}-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"{NAME}-{__version__}.dist-info/METADATA").decode()
    for path in sorted(wanted - names):
        problems.append(f"wheel {wheel.name} misses {path}")
    for field in ("Name: django-docsync", f"Version: {__version__}", "License-Expression: MIT"):
        if field not in metadata.splitlines():
            problems.append(f"wheel METADATA lacks {field!r}")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        problems.append("wheel has no LICENSE")
    strays = sorted(n for n in names if not n.startswith(("docsync/", f"{NAME}-")))
    if strays:
        problems.append(f"wheel holds files outside the package: {strays}")

    sdist = one(dist, f"{NAME}-{__version__}.tar.gz")
    prefix = f"{NAME}-{__version__}/"
    with tarfile.open(sdist) as tf:
        members = {m.name.removeprefix(prefix) for m in tf.getmembers() if m.isfile()}
    for path in sorted((wanted | SDIST_EXTRA) - members):
        problems.append(f"sdist {sdist.name} misses {path}")

    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if problems:
        return 1
    size = wheel.stat().st_size
    print(
        f"check_dist: {wheel.name} ({size / 1024:.0f} KiB) and {sdist.name} "
        f"({sdist.stat().st_size / 1024:.0f} KiB) hold all {len(wanted)} package files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
