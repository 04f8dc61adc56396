"""The end-to-end test server's application wrapped in ``GracefulDrain`` (drain on SIGTERM)."""

from docsync.lifespan import GracefulDrain
from tests.e2e_asgi import application as routed

application = GracefulDrain(routed)
