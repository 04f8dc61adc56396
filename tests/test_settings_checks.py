"""``manage.py check`` and server start-up refuse wrong DOCSYNC settings with the fix.

Each misconfiguration is checked through Django's check framework, by the
settings object at run time, by a real server process at start-up, and (for
the README's "Add it to your project") by ``manage.py check`` in a project
made with ``startproject``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from docsync.checks import check_settings, ensure_valid_settings
from docsync.conf import DEFAULTS, docsync_settings, rule_for
from docsync.providers.memory import InMemoryProvider
from tests.liveserver import ROOT, free_port

DOCNODE = "docsync.bindings.docnode.DocNodeBinding"


class SizedProvider(InMemoryProvider):
    """A provider of one's own, with options of its own."""

    def __init__(self, *, size: int = 0) -> None:
        super().__init__()
        self.size = size


NOTE = {"doc_type": "note", "nodes": {"note": {}, "p": {"text": {"kind": "string"}}}}


def docsync_messages(**docsync):
    with override_settings(DOCSYNC=docsync):
        return [m for m in check_settings(None) if m.id.startswith("docsync.E")]


def only_error(**docsync):
    messages = docsync_messages(**docsync)
    assert len(messages) == 1, [str(m) for m in messages]
    return messages[0]


# -- every setting: a value of the wrong type is an error naming key, value, fix


def wrong_value(name):
    rule = rule_for(name)
    for candidate in ("lots", "1MB", -1, 1.5, [1], True, None, 0):
        if not rule.ok(candidate):
            return candidate
    raise AssertionError(
        f"DOCSYNC[{name!r}] accepts anything: give it a Rule in docsync.conf.RULES"
    )


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_every_default_passes_its_rule(name):
    assert rule_for(name).ok(DEFAULTS[name]), name


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_a_wrong_value_of_every_setting_is_a_check_error(name):
    bad = wrong_value(name)
    error = only_error(**{name: bad})
    assert error.id == "docsync.E003"
    assert f"DOCSYNC[{name!r}] = {bad!r}" in error.msg
    assert repr(DEFAULTS[name]) in error.hint and name in error.hint


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("SQUASH_THRESHOLD", "lots", "whole number >= 0"),
        ("MAX_PAYLOAD", "1MB", "whole number >= 1 (bytes)"),
        ("MAX_PAYLOAD", 0, "whole number >= 1"),
        ("PING_INTERVAL", 25.5, "whole number"),
        ("DATABASE_THREADS", True, "whole number"),
        ("ERROR_WINDOW", float("inf"), "a number >= 0"),
        ("ERROR_DELAY", "0.25", "a number >= 0"),
        ("OPEN_DOCUMENTS", "yes", "True or False"),
        ("PROVIDER_OPTIONS", ["using", "default"], "a dict"),
        ("STATE_OPTIONS", None, "a dict"),
        ("BINDINGS", ["note"], "a dict"),
        ("PROVIDER", "ORMProvider", "a dotted path"),
        ("AUTHENTICATE", None, "a dotted path"),
        ("DEFAULT_BINDING", 3, "None, a dotted path"),
        ("TOKEN_LIFETIME", 0, "whole number >= 1 (seconds)"),
        ("TOKEN_LIFETIME", 1.5, "whole number >= 1"),
        ("HEALTH_TIMEOUT", 0, "a number of seconds > 0"),
        ("HEALTH_TIMEOUT", float("nan"), "a number of seconds > 0"),
        ("HEALTH_DATABASES", "default", "a list of database aliases"),
        ("HEALTH_DATABASES", ["missing"], "'missing', not in DATABASES"),
    ],
)
def test_wrong_types_name_what_is_expected(name, value, words):
    error = only_error(**{name: value})
    assert error.id == "docsync.E003" and words in error.msg and repr(value) in error.msg


def test_the_settings_object_refuses_a_wrong_value_when_read():
    with override_settings(DOCSYNC={"SQUASH_THRESHOLD": "lots"}):
        with pytest.raises(ImproperlyConfigured, match=r"SQUASH_THRESHOLD'\] = 'lots'"):
            docsync_settings.SQUASH_THRESHOLD  # noqa: B018


def test_unknown_keys_are_named_with_the_valid_ones():
    error = only_error(SQUASH_TRESHOLD=10)
    assert error.id == "docsync.E001"
    assert "SQUASH_TRESHOLD" in error.msg and "SQUASH_THRESHOLD" in error.msg


def test_several_problems_are_reported_together():
    ids = [m.id for m in docsync_messages(MAX_PAYLOAD="1MB", PROVIDER="nope.Provider")]
    assert sorted(ids) == ["docsync.E003", "docsync.E004"]


# -- dotted paths are imported, and must name the right kind of object


@pytest.mark.parametrize(
    "docsync, words",
    [
        ({"PROVIDER": "docsync.providers.nope.Provider"}, "Could not import"),
        ({"PROVIDER": "docsync.conf.DEFAULTS"}, "not a provider"),
        ({"AUTHENTICATE": "docsync.auth.nope"}, "Could not import"),
        ({"AUTHENTICATE": "docsync.conf.DEFAULTS"}, "cannot be called"),
        ({"AUTHORIZE": "docsync.utils.database_from_url.__name__"}, "Could not import"),
        ({"AUTHORIZE": "docsync.default.reset_default_server"}, "one argument (the event)"),
        ({"STATE_BACKEND": "docsync.nope.State"}, "Could not import"),
        ({"STATE_BACKEND": "docsync.providers.memory.InMemoryProvider"}, "not a state backend"),
        ({"SERVER": "docsync.nope.server"}, "Could not import"),
        ({"SERVER": "docsync.conf.DEFAULTS"}, "neither a DocSyncServer nor a factory"),
        ({"SERVER": "docsync.utils.database_from_url"}, "without arguments"),
    ],
)
def test_dotted_paths_are_imported_and_checked(docsync, words):
    [(name, value)] = docsync.items()
    error = only_error(**docsync)
    assert error.id == "docsync.E004", error
    assert words in error.msg and name in error.msg and value in error.msg
    assert error.hint


@pytest.mark.parametrize(
    "docsync, words",
    [
        (
            {"PROVIDER": "docsync.providers.orm.ORMProvider", "PROVIDER_OPTIONS": {"usin": "x"}},
            "Unknown ORMProvider options: 'usin'",
        ),
        (
            {"PROVIDER": f"{__name__}.SizedProvider", "PROVIDER_OPTIONS": {"sise": 1}},
            "does not fit SizedProvider: got an unexpected keyword argument 'sise'",
        ),
        (
            {"STATE_BACKEND": "docsync.redis_state.RedisState", "STATE_OPTIONS": {"hb": 1}},
            "does not fit RedisState",
        ),
    ],
)
def test_options_must_fit_their_class(docsync, words):
    error = only_error(**docsync)
    assert error.id == "docsync.E003" and words in error.msg, error.msg


# -- bindings are built


@pytest.mark.parametrize(
    "spec, words",
    [
        ("docsync.bindings.nope.Binding", "Could not import binding"),
        ({"options": NOTE}, "without a 'class' key"),
        ({"class": DOCNODE, "options": NOTE, "option": {}}, "unknown keys ['option']"),
        ({"class": DOCNODE, "options": "note"}, "is not a dict of keyword arguments"),
        ({"class": DOCNODE, "options": {**NOTE, "bogus": 1}}, "unknown options ['bogus']"),
        (DOCNODE, "needs the options 'doc_type'"),
        ({"class": "docsync.conf.DEFAULTS"}, "must be a docsync.bindings.BaseBinding"),
    ],
)
def test_bindings_are_built(spec, words):
    error = only_error(BINDINGS={"note": spec})
    assert error.id == "docsync.E005" and words in error.msg, error.msg
    assert "BINDINGS['note']" in error.msg


def test_a_broken_default_binding_is_named():
    error = only_error(DEFAULT_BINDING={"class": DOCNODE, "options": {"nodes": {}}})
    assert error.id == "docsync.E005" and "DEFAULT_BINDING" in error.msg


def test_good_settings_are_clean():
    assert (
        docsync_messages(
            PROVIDER="docsync.providers.orm.ORMProvider",
            PROVIDER_OPTIONS={"using": "default"},
            BINDINGS={"note": {"class": DOCNODE, "options": NOTE}},
            STATE_BACKEND="docsync.redis_state.RedisState",
            STATE_OPTIONS={"heartbeat": 1.0, "ttl": 4.0},
            SQUASH_THRESHOLD=0,
            ERROR_WINDOW=2,
        )
        == []
    )


def test_the_test_settings_pass_every_check():
    assert [
        str(m) for m in run_checks() if m.id.startswith("docsync.") and m.id != "docsync.W001"
    ] == []


def test_ensure_valid_settings_lists_every_error():
    with override_settings(DOCSYNC={"MAX_PAYLOAD": "1MB", "SQUASH_THRESHOLD": "lots"}):
        with pytest.raises(ImproperlyConfigured) as excinfo:
            ensure_valid_settings()
    text = str(excinfo.value)
    assert "MAX_PAYLOAD" in text and "SQUASH_THRESHOLD" in text and "HINT" in text


# -- runserver without daphne


def without(app):
    from django.conf import settings

    return [a for a in settings.INSTALLED_APPS if a != app]


def test_runserver_without_daphne_is_a_check_message():
    with override_settings(INSTALLED_APPS=without("daphne")):
        [warning] = [m for m in check_settings(None) if m.id == "docsync.W003"]
    assert "'daphne' is not in INSTALLED_APPS" in warning.msg and "400" in warning.msg
    assert "Put 'daphne' first in INSTALLED_APPS" in warning.hint


def test_daphne_after_staticfiles_is_a_check_message():
    apps = [*without("daphne"), "daphne"]
    with override_settings(INSTALLED_APPS=apps):
        [warning] = [m for m in check_settings(None) if m.id == "docsync.W003"]
    assert "comes after 'django.contrib.staticfiles'" in warning.msg


def test_daphne_first_is_clean():
    assert [m for m in check_settings(None) if m.id == "docsync.W003"] == []


# -- real processes: server start-up and the README's project


def test_a_server_does_not_start_on_wrong_settings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e_settings",
        "E2E_PROVIDER": "docsync.providers.orm.ORMProvidr",
    }
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "tests.e2e_asgi:application", "--port", str(port)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "docsync's settings are wrong" in done.stderr
    assert "'docsync.providers.orm.ORMProvidr' for DOCSYNC['PROVIDER']" in done.stderr


def _smoke():
    spec = importlib.util.spec_from_file_location("smoke_wheel", ROOT / ".ci" / "smoke_wheel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def readme_project(tmp_path_factory):
    """A ``startproject`` project with docsync added as the README says."""
    smoke = _smoke()
    work = tmp_path_factory.mktemp("readme")
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", smoke.PROJECT], cwd=work, check=True
    )
    project = work / smoke.PROJECT
    smoke.add_docsync(project, smoke.readme_section(ROOT / "README.md"))
    return project


def manage_check(project: Path, extra: str = "") -> subprocess.CompletedProcess:
    settings = project / "myproject" / "settings.py"
    original = settings.read_text()
    settings.write_text(original + extra)
    try:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env["PYTHONPATH"] = str(ROOT)
        return subprocess.run(
            [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        settings.write_text(original)


def test_following_the_readme_leaves_check_clean(readme_project):
    done = manage_check(readme_project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


@pytest.mark.parametrize(
    "extra, words",
    [
        ('DOCSYNC["SQUASH_THRESHOLD"] = "lots"', "DOCSYNC['SQUASH_THRESHOLD'] = 'lots'"),
        ('DOCSYNC["MAX_PAYLOAD"] = "1MB"', "DOCSYNC['MAX_PAYLOAD'] = '1MB'"),
        ('INSTALLED_APPS.remove("daphne")', "docsync.W003"),
        ("del AUTHENTICATION_BACKENDS", "docsync.W002"),
        ('DATABASES["default"]["OPTIONS"] = {}', "docsync.W010"),
    ],
)
def test_manage_py_check_reports_misconfigurations(readme_project, extra, words):
    done = manage_check(readme_project, "\n" + extra + "\n")
    assert done.returncode != 0
    assert words in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("setting", "where"),
    [
        (
            {"PROVIDER": {"class": "docsync.providers.orm.ORMProvider", "options": {"usin": "x"}}},
            "DOCSYNC['PROVIDER']['options'] = {'usin': 'x'} does not fit ORMProvider",
        ),
        (
            {"STATE_BACKEND": {"class": "docsync.redis_state.RedisState", "options": {"hb": 1}}},
            "DOCSYNC['STATE_BACKEND']['options'] = {'hb': 1} does not fit RedisState",
        ),
        (
            {"PROVIDER": {"class": "docsync.providers.orm.ORMProvider", "opts": {}}},
            "{'class': 'dotted.path', 'options': {...}}",
        ),
    ],
)
def test_class_and_options_in_one_dict_are_checked_where_written(setting, where):
    with override_settings(DOCSYNC=setting):
        messages = check_settings(None)
    assert any(where in m.msg for m in messages if m.level >= 40), [m.msg for m in messages]
