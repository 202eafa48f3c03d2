"""The analysts' copy: published at most once per interval while jobs keep coming, never left stale."""

from __future__ import annotations

import dataclasses
import errno

import pytest

from service import warehouse
from service.jobs import PUBLISH_PENDING, PUBLISH_SECONDS, JobStore, publish_pending_if_due
from service.settings import Settings, get_settings
from tests.conftest import Api


def publishing_every(seconds: str, api: Api, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, JobStore]:
    """The service's settings with STOCKYARD_PUBLISH_INTERVAL set, as the worker will read them."""
    monkeypatch.setenv("STOCKYARD_PUBLISH_INTERVAL", seconds)
    get_settings.cache_clear()
    settings = get_settings()
    return settings, JobStore(api.connection, settings)


def test_a_burst_of_jobs_is_published_once_per_interval(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, store = publishing_every("60", api, monkeypatch)

    api.run("suppliers", [{"externalId": "A"}])  # the first copy is published at once
    assert api.query("SELECT external_id FROM suppliers") == [("A",)]
    api.run("suppliers", [{"externalId": "B"}])  # within the interval: pending, the copy is not redone
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("A",)]
    assert not publish_pending_if_due(store, settings)  # not due yet

    interval_passed = dataclasses.replace(settings, publish_interval_seconds=0)
    assert publish_pending_if_due(store, interval_passed)
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("A",), ("B",)]
    assert not publish_pending_if_due(store, interval_passed)  # nothing left pending


def test_a_costly_copy_is_published_less_often(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wait after a copy grows with what the copy cost, so publishing cannot starve the writer."""
    settings, store = publishing_every("0.001", api, monkeypatch)
    api.run("suppliers", [{"externalId": "A"}])
    api.run("suppliers", [{"externalId": "B"}])  # cheap copies, a short interval: published at once
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("A",), ("B",)]

    api.connection.set(PUBLISH_SECONDS, 3600)  # as if that copy had taken an hour
    api.run("suppliers", [{"externalId": "C"}])
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("A",), ("B",)]
    assert not publish_pending_if_due(store, settings)

    api.connection.set(PUBLISH_SECONDS, 0)
    assert publish_pending_if_due(store, settings)
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("A",), ("B",), ("C",)]


def test_a_failed_copy_stays_pending_and_the_job_stays_completed(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy is made after the job reads COMPLETED; if it fails, the job stands and the copy is redone."""
    settings, store = publishing_every("0", api, monkeypatch)
    api.run("suppliers", [{"externalId": "A"}])

    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(warehouse, "_copy_for_analysts", disk_full)
        status = api.run("suppliers", [{"externalId": "B"}])
    assert status["status"] == "COMPLETED"
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("A",)]
    assert api.connection.exists(PUBLISH_PENDING)  # what an idle worker publishes
    assert publish_pending_if_due(store, settings)
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("A",), ("B",)]
    assert not api.connection.exists(PUBLISH_PENDING)
