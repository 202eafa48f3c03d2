"""The analysts' copy: published at most once per interval while jobs keep coming, never left stale."""

from __future__ import annotations

import dataclasses

import pytest

from service.jobs import PUBLISH_SECONDS, JobStore, publish_pending_if_due
from service.settings import get_settings
from tests.conftest import Api


def test_a_burst_of_jobs_is_published_once_per_interval(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKYARD_PUBLISH_INTERVAL", "60")
    get_settings.cache_clear()
    settings = get_settings()
    store = JobStore(api.connection, settings)

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
    monkeypatch.setenv("STOCKYARD_PUBLISH_INTERVAL", "0.001")
    get_settings.cache_clear()
    settings = get_settings()
    store = JobStore(api.connection, settings)
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
