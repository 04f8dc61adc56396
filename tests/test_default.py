"""What the settings describe is built once (``docsync.default``), and every
part of the app gets the same server, provider and bindings from there.

Also: the one way of writing a class with options, and the 0.1 names that
still work with a deprecation warning.
"""

from __future__ import annotations

import importlib
import warnings

import pytest
from django.contrib.admin.sites import site
from django.core.management import call_command
from django.test import override_settings

from docsync import default
from docsync.bindings import BindingRegistry
from docsync.consumers import DocSyncConsumer
from docsync.identity import Identity
from docsync.models import Document
from docsync.providers.memory import InMemoryProvider
from docsync.providers.orm import ORMProvider
from docsync.requests import SyncRequest
from docsync.server import DocSyncServer
from docsync.state import InProcessState
from docsync.sync import sync_document

DOCNODE = "docsync.bindings.docnode.DocNodeBinding"
NOTE = {"doc_type": "note", "nodes": {"note": {}, "p": {"text": {"kind": "string"}}}}
CUSTOM = DocSyncServer(provider=ORMProvider(), doc_binding=BindingRegistry())


def custom_server() -> DocSyncServer:
    return CUSTOM


def test_one_server_one_provider_one_registry():
    with override_settings(DOCSYNC={"BINDINGS": {"note": {"class": DOCNODE, "options": NOTE}}}):
        server = default.get_default_server()
        assert default.get_default_server() is server
        assert default.default_provider() is server.provider
        # The admin renders every snapshot with the one registry (not one per call).
        assert default.default_bindings() is server.bindings
        assert default.default_bindings().get("note") is server.bindings.get("note")
    assert default.get_default_server() is not server  # the settings changed: built anew


@pytest.mark.django_db
def test_with_a_server_setting_everybody_uses_its_provider():
    # The settings' own bindings would refuse to squash what is stored below.
    note = {"class": DOCNODE, "options": NOTE}
    with override_settings(
        DOCSYNC={"SERVER": f"{__name__}.custom_server", "BINDINGS": {"note": note}}
    ):
        assert default.get_default_server() is CUSTOM
        assert default.default_provider() is CUSTOM.provider
        assert default.orm_provider_for("default") is CUSTOM.provider  # the admin's
        consumer = DocSyncConsumer()
        assert consumer.server is CUSTOM
        identity = Identity(user_id="", device_id="d", client_id="c")
        sync_document(
            CUSTOM.provider,
            SyncRequest("note", "n1", [["x"]], None, 0),
            identity,
            CUSTOM.bindings,
        )
        # The command squashes through the routed server's provider and bindings
        # (its registry has no binding for "note": nothing to squash, no error).
        call_command("docsync_squash", "n1", verbosity=0)
        assert Document.objects.get(doc_id="n1").latest_clock == 1
        assert site.is_registered(Document)


def test_class_settings_take_a_class_and_its_options_in_one_dict():
    spec = {"class": "docsync.providers.orm.ORMProvider", "options": {"using": "default"}}
    state = {"class": "docsync.state.InProcessState", "options": {}}
    with override_settings(DOCSYNC={"PROVIDER": spec, "STATE_BACKEND": state}):
        server = default.get_default_server()
        assert isinstance(server.provider, ORMProvider)
        assert server.provider.using == "default"
        assert isinstance(server.state, InProcessState)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with override_settings(DOCSYNC={"PROVIDER": spec}):
            default.get_default_server()  # the new form warns about nothing


def test_options_settings_still_work_with_a_deprecation_warning():
    old = {
        "PROVIDER": "docsync.providers.orm.ORMProvider",
        "PROVIDER_OPTIONS": {"using": "default"},
    }
    with override_settings(DOCSYNC=old):
        with pytest.warns(DeprecationWarning, match="PROVIDER_OPTIONS"):
            server = default.get_default_server()
        assert isinstance(server.provider, ORMProvider)


def test_options_given_twice_are_refused():
    both = {
        "PROVIDER": {"class": "docsync.providers.orm.ORMProvider", "options": {"using": "x"}},
        "PROVIDER_OPTIONS": {"using": "default"},
    }
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(DOCSYNC=both), pytest.raises(ImproperlyConfigured, match="both"):
        default.get_default_server()


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        ("docsync.exceptions", "DocsyncError", "DocSyncError"),
        ("docsync.conf", "DocsyncSettings", "DocSyncSettings"),
        ("docsync.apps", "DocsyncConfig", "DocSyncConfig"),
    ],
)
def test_old_names_still_import_with_a_deprecation_warning(module, old, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(mod, old) is getattr(mod, new)


def test_the_old_requests_module_still_imports():
    import sys

    sys.modules.pop("docsync.events", None)
    with pytest.warns(DeprecationWarning, match="docsync.requests"):
        events = importlib.import_module("docsync.events")
    assert events.SyncRequest is SyncRequest


async def test_closing_the_server_closes_its_state():
    closed = []

    class State(InProcessState):
        async def close(self) -> None:
            closed.append(True)

    server = DocSyncServer(provider=InMemoryProvider(), state=State())
    await server.close()
    assert closed == [True]
