import pytest

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
    return server.as_asgi()


from tests.e2e_db import pg_url  # noqa: E402, F401  (a fixture for end-to-end servers)
