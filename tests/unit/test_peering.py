"""The resync loop acts only where kopf would: no live peer outranks or ties with us."""

from datetime import UTC, datetime, timedelta

from streamdist.peering import paused

NOW = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


def _peer(priority, seen_ago=1, lifetime=60):
    return {"priority": priority, "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat(), "lifetime": lifetime}


def test_alone_or_highest_acts():
    assert not paused({}, "me", 1, NOW)
    assert not paused({"me": _peer(1)}, "me", 1, NOW)
    assert not paused({"me": _peer(1), "other": _peer(0)}, "me", 1, NOW)


def test_outranked_or_tied_pauses():
    assert paused({"me": _peer(0), "other": _peer(1)}, "me", 0, NOW)
    assert paused({"me": _peer(1), "other": _peer(1)}, "me", 1, NOW)


def test_dead_peer_does_not_count():
    assert not paused({"me": _peer(0), "other": _peer(5, seen_ago=120)}, "me", 0, NOW)
    assert not paused({"other": {"priority": 9}}, "me", 0, NOW)
