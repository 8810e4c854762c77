"""Serving and working processes freeze their start-up heap, so a full garbage collection walks only what
requests and tasks allocate (benchmarks/gc_freeze.py measures the pauses it saves)."""
from __future__ import annotations

import gc

import pytest

from backoffice import startup
from tasks import celery_app


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settle_freezes_what_is_alive(unfrozen):
    kept = [object() for _ in range(1000)]
    startup.settle(True)
    assert gc.get_freeze_count() >= len(kept)


def test_settle_leaves_the_collector_alone_when_the_setting_is_off(unfrozen):
    startup.settle(False)
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("setting", [True, False])
def test_a_ready_worker_settles_as_its_setting_says(app, unfrozen, setting):
    app.config["GC_FREEZE"] = setting
    celery = celery_app.init_celery(app)
    assert celery.conf.backoffice_gc_freeze is setting
    celery_app._settle(type("Sender", (), {"app": celery})())
    assert (gc.get_freeze_count() > 0) is setting
