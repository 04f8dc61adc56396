"""docsync.gctune: the collector tuned once per process, and only if untouched."""

from __future__ import annotations

import gc

import pytest
from django.test import override_settings

from docsync import gctune


@pytest.fixture
def fresh(monkeypatch):
    """A process not tuned yet; the collector's state restored afterwards."""
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    monkeypatch.setattr(gctune, "_tuned", False)
    gc.set_threshold(*gctune.DEFAULT_THRESHOLD)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


def test_the_first_call_freezes_and_raises_the_young_threshold(fresh):
    assert gctune.tune_once() is True
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (gctune.YOUNG_THRESHOLD, 10, 10)
    gc.unfreeze()
    assert gctune.tune_once() is False  # once per process
    assert gc.get_freeze_count() == 0


def test_thresholds_someone_chose_are_kept(fresh):
    gc.set_threshold(5000, 5, 5)
    assert gctune.tune_once() is True
    assert gc.get_threshold() == (5000, 5, 5)


def test_a_disabled_collector_is_left_alone(fresh):
    gc.disable()
    assert gctune.tune_once() is False
    assert gc.get_freeze_count() == 0 and not gc.isenabled()


@override_settings(DOCSYNC={"GC_TUNING": False})
def test_off_leaves_the_collector_alone(fresh):
    assert gctune.tune_once() is False
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == gctune.DEFAULT_THRESHOLD


def test_cyclic_garbage_is_still_collected(fresh):
    import weakref

    gctune.tune_once()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
