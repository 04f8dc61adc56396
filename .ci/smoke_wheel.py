"""Follow the README's "Add it to your project" in a new project; sync a document.

Run by .ci/smoke_wheel.sh with the virtual environment that holds the wheel,
in an empty folder outside the checkout. Exits non-zero (with the server's
log) on the first step that fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

PROJECT = "myproject"
DOC = "01k00000000000000000000001"


def step(title: str) -> None:
    print(f"smoke: {title}", flush=True)


def run(*args: str, cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"smoke: {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def readme_section(readme: Path) -> dict[str, str]:
    """The section's Python blocks by the file their first comment names."""
    text = readme.read_text()
    section = text.split("## Add it to your project", 1)[1].split("\n## ", 1)[0]
    blocks = {}
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.S):
        first = block.splitlines()[0]
        match = re.match(r"# (\w+\.py)", first)
        if not match:
            sys.exit(f"smoke: a Python block of the section does not name its file: {first!r}")
        blocks[match.group(1)] = block
    if set(blocks) != {"settings.py", "asgi.py", "urls.py"}:
        sys.exit(f"smoke: expected settings.py, asgi.py and urls.py blocks, got {sorted(blocks)}")
    return blocks


def add_docsync(project: Path, blocks: dict[str, str]) -> None:
    package = project / PROJECT
    settings = package / "settings.py"
    settings.write_text(settings.read_text() + "\n" + blocks["settings.py"])
    (package / "asgi.py").write_text(blocks["asgi.py"])
    (package / "urls.py").write_text(blocks["urls.py"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, server: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not listen on port {port} within {timeout} s")


async def sync_through(url: str, token: str) -> None:
    import socketio

    async def client(client_id: str, request: dict) -> tuple[dict, dict]:
        sio = socketio.AsyncClient()
        identity: asyncio.Future = asyncio.get_running_loop().create_future()
        sio.on("identity", lambda data: identity.set_result(data))
        auth = {"deviceId": "smoke", "clientId": client_id, "claimedUserId": None, "token": token}
        await sio.connect(url, transports=["websocket"], auth=auth, wait_timeout=10)
        try:
            who = await asyncio.wait_for(identity, 10)
            ack = await sio.call("sync", request, timeout=10)
        finally:
            await sio.disconnect()
        return who, ack

    first = {"type": "doc", "docId": DOC, "operations": [{"hello": "world"}]}
    who, ack = await client("tab-1", {**first, "serializedDoc": None, "clock": 0})
    assert who == {"userId": "1"}, who
    assert ack["data"]["clock"] == 1, ack
    # A second connection reads the batch back from the database.
    request = {"type": "doc", "docId": DOC, "operations": [], "serializedDoc": None, "clock": 0}
    _, ack = await client("tab-2", request)
    assert "data" in ack, ack
    assert ack["data"]["clock"] == 1 and ack["data"]["operations"] == [{"hello": "world"}], ack


def main(readme: Path) -> None:
    work = Path.cwd()
    python = sys.executable
    import docsync

    installed = Path(docsync.__file__).resolve()
    if readme.resolve().parent in installed.parents:
        sys.exit(f"smoke: docsync imports from the checkout ({installed}), not the wheel")
    step(f"docsync {docsync.__version__} from {installed.parent}")

    step(f"startproject {PROJECT}; add docsync as the README says")
    run(str(Path(python).parent / "django-admin"), "startproject", PROJECT, cwd=work)
    project = work / PROJECT
    add_docsync(project, readme_section(readme))

    step("manage.py check (warnings fail)")
    print(run(python, "manage.py", "check", "--fail-level", "WARNING", cwd=project), end="")
    step("manage.py migrate")
    run(python, "manage.py", "migrate", "-v", "0", cwd=project)
    token = run(python, "manage.py", "docsync_token", "alice", "--create", cwd=project).strip()

    port = free_port()
    step(f"manage.py runserver on port {port}; sync a document through python-socketio")
    log = open(project / "server.log", "w")  # noqa: SIM115  (closed below)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=project,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_for(port, server)
        asyncio.run(sync_through(f"http://127.0.0.1:{port}", token))
    except BaseException as exc:
        server.terminate()
        server.wait(10)
        log.close()
        print((project / "server.log").read_text(), file=sys.stderr)
        sys.exit(f"smoke: FAILED: {exc!r}")
    server.terminate()
    server.wait(10)
    log.close()
    if "Daphne" not in (project / "server.log").read_text():
        sys.exit("smoke: runserver did not run daphne:\n" + (project / "server.log").read_text())

    count = run(
        python,
        "manage.py",
        "shell",
        "-v",
        "0",
        "-c",
        "from docsync.models import Document; "
        f"print(Document.objects.filter(doc_id={DOC!r}, latest_clock=1).count())",
        cwd=project,
    ).strip()
    if count != "1":
        sys.exit(f"smoke: the document is not in the database (count {count!r})")
    step("passed: the wheel installs, checks, migrates, serves and syncs")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
