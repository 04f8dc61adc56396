"""Start real server processes (daphne) on free ports for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s")


class LiveServer:
    """One daphne process serving ``tests.e2e_asgi`` (or another app)."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        server: str = "daphne",
        app: str = "tests.e2e_asgi:application",
        settings: str = "tests.e2e_settings",
        port: int | None = None,
    ):
        self._auto_port, self._attempts = port is None, 0
        self.port = port or free_port()
        self.server = server
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings, **(env or {})}
        self.app = app
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="docsync-e2e-", suffix=".log", delete=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"

    def start(self) -> LiveServer:
        if self.server == "uvicorn":
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--timeout-graceful-shutdown",
                "10",
                "--ws-per-message-deflate",
                "false",
                self.app,
            ]
        else:
            cmd = [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                self.app,
            ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, proc=self.proc)
        # Something else may have taken the free port first (other test runs
        # share this machine): then our server exits with "address in use"
        # while the port answers. Try again on another port.
        time.sleep(0.2)
        if self.proc.poll() is not None and self._auto_port and self._attempts < 3:
            self._attempts += 1
            self.port = free_port()
            return self.start()
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")


def manage(
    *args: str, env: dict[str, str] | None = None, settings: str = "tests.e2e_settings"
) -> str:
    """Run a management command against the server's settings; return stdout."""
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout
