"""A PostgreSQL cluster of a test's own: its data directory, its port, its pid.

For fault tests that stop the database under a live server without touching
the shared one. ``initdb`` refuses to run as root, so as root the cluster
runs as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from tests.liveserver import free_port


def pg_bin() -> str | None:
    """The directory of ``initdb`` and ``postgres``, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PgCluster:
    """``start()``, ``stop()`` (by pid, fast shutdown), ``start()`` again."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="docsync-pg-")
        self.proc: subprocess.Popen | None = None
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, -1)
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def data(self) -> str:
        return os.path.join(self.dir, "data")

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [os.path.join(self.bin, tool), *args],
            check=True,
            capture_output=True,
            user=self.user,
        )

    def start(self) -> PgCluster:
        log = open(os.path.join(self.dir, "postgres.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                os.path.join(self.bin, "postgres"),
                "-D",
                self.data,
                "-p",
                str(self.port),
                "-k",
                self.dir,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self.user,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown by pid: every connection is cut, nothing is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(20)

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
