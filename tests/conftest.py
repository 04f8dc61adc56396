from collections import defaultdict

import pytest

from docsync.consumers import DocSyncConsumer
from docsync.providers.memory import InMemoryProvider
from docsync.server import DocSyncServer
from tests.auth import token_authenticate


@pytest.fixture
def server():
    """A server on the in-memory provider with ``valid-<name>`` tokens."""
    return DocSyncServer(
        provider=InMemoryProvider(),
        authenticate=token_authenticate,
        authorize=lambda event: True,
    )


@pytest.fixture
def app(server):
    return DocSyncConsumer.as_asgi(server=server)


from tests.e2e_db import pg_url  # noqa: E402, F401  (a fixture for end-to-end servers)


def pytest_terminal_summary(terminalreporter):
    """List skipped tests by group (the reason's first word) with the reason.

    Service skips read ``"<group>: <why>"`` (``PostgreSQL``, ``MariaDB``,
    ``Redis``, ``Node.js``); CI turns them into failures.
    """
    by_reason: dict[str, list[str]] = defaultdict(list)
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = " ".join(reason.removeprefix("Skipped: ").split())
        by_reason[reason].append(report.nodeid.split("::")[0])
    if not by_reason:
        return
    groups: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for reason, files in by_reason.items():
        head, sep, rest = reason.partition(": ")
        group = head if sep and len(head) <= 20 else "other"
        groups[group].append((rest if group != "other" else reason, files))
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", "skipped tests by group")
    for group, reasons in sorted(groups.items(), key=lambda item: item[0] == "other"):
        total = sum(len(files) for _, files in reasons)
        write(f"{group}: {total} skipped")
        for reason, files in reasons:
            write(f"    {len(files)} x {reason}")
            write(f"        in {', '.join(sorted(set(files)))}")
