"""plan_input and plan_failure, table-tested: phases, conditions, Events and the switch
of source, from hand-built observations."""

import dataclasses
from datetime import UTC, datetime

import pytest

from streamdist import mediamtx
from streamdist.confidence import ConfidenceState
from streamdist.handlers.memory import InputObservation
from streamdist.input_plan import SeenInput, plan_failure, plan_input
from streamdist.models import parse_input
from streamdist.switch_state import Switched, SwitchState

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BODY = {"metadata": {"name": "cam", "namespace": "live", "uid": "u", "generation": 2}}


def _input(**spec):
    return parse_input({**BODY, "spec": {"protocol": "udp", **spec}})


def _observed(ready: bool, online: bool | None = None, switch: SwitchState | None = None) -> InputObservation:
    sample = mediamtx.PathSample(name="cam", ready=ready, online=ready if online is None else online, ready_time=None,
                                 source_type="rtspSession", source_id="s", tracks=("H264",) if ready else (),
                                 bytes_received=0, bytes_sent=0, readers=(), sampled_at=0.0)
    return InputObservation(mediamtx.input_health(None, sample), sample, switch=switch)


START = Switched("primary", None, None, "start", "2026-11-29T11:59:00.000Z")
TO_BACKUP = Switched("backup", "primary", 312, "lost", "2026-11-29T11:59:30.120Z")
TO_SLATE = Switched("slate", "backup", 301, "lost", "2026-11-29T11:59:40.000Z")
BACK = Switched("primary", "slate", 40, "returned", "2026-11-29T11:59:50.500Z")


def _seen(inp=None, **kw):
    base = dict(body=BODY, input=inp or _input(), port=20001, endpoints=("udp://cam-ingest.live.svc:20001",),
                router_ready=True, observation=None, previous={}, now=NOW)
    return SeenInput(**{**base, **kw})


def _cond(status, kind):
    return next(c for c in status["conditions"] if c["type"] == kind)


@pytest.mark.parametrize(("router_ready", "observation", "phase", "ready", "receiving"), [
    (False, None, "Pending", "RouterStarting", "HealthUnknown"),
    (False, _observed(True), "Pending", "RouterStarting", "HealthUnknown"),
    (True, None, "Waiting", "RouterRunning", "HealthUnknown"),
    (True, _observed(False), "Waiting", "RouterRunning", "NoSource"),
    (True, _observed(True), "Live", "RouterRunning", "SourcePublishing"),
    (True, InputObservation(None, None, error="HTTP 401"), "Waiting", "RouterRunning", "HealthUnknown"),
])
def test_phase_and_conditions(router_ready, observation, phase, ready, receiving):
    status = plan_input(_seen(router_ready=router_ready, observation=observation)).status
    assert status["phase"] == phase
    assert (_cond(status, "Ready")["reason"], _cond(status, "Receiving")["reason"]) == (ready, receiving)
    assert status["observedGeneration"] == 2 and status["port"] == 20001


@pytest.mark.parametrize(("before", "observation", "events"), [
    ({}, _observed(True), [("Normal", "SourceLive")]),
    ({"phase": "Live"}, _observed(True), []),
    ({"phase": "Live"}, _observed(False), [("Warning", "SourceLost")]),
    ({}, _observed(False), []),  # Waiting on the way up is quiet
    # a replica that just took over has not polled yet: the input stays Live, no SourceLost
    ({"phase": "Live"}, None, []),
    # a poll that fails is an answer: health unknown, Waiting, the source counted lost
    ({"phase": "Live"}, InputObservation(None, None, error="HTTP 401"), [("Warning", "SourceLost")]),
])
def test_events_on_transitions(before, observation, events):
    decision = plan_input(_seen(observation=observation, previous=before))
    assert [(e.type, e.reason) for e in decision.events] == events


def test_each_switch_is_an_event_with_its_gap_and_lands_in_last_switch():
    inp = _input(publishSecretRef={"name": "p", "key": "k"}, backup={"protocol": "srt", "port": 21000})
    started = plan_input(_seen(inp, observation=_observed(True, switch=SwitchState("primary", (START,)))))
    assert started.status["activeSource"] == "primary" and "lastSwitch" not in started.status
    assert started.switch_gaps == ()
    on_backup = plan_input(_seen(inp, observation=_observed(True, switch=SwitchState("backup", (START, TO_BACKUP))),
                                 previous={**started.status, "phase": "Live"}))
    assert on_backup.status["activeSource"] == "backup"
    assert on_backup.status["lastSwitch"] == {"from": "primary", "to": "backup", "gapMs": 312, "reason": "lost",
                                              "at": "2026-11-29T11:59:30.120Z"}
    assert [(e.type, e.reason) for e in on_backup.events] == [("Warning", "SwitchedToBackup")]
    assert "312 ms without frames" in on_backup.events[0].message
    assert on_backup.switch_gaps == (("backup", 312),)
    assert _cond(on_backup.status, "OnAir")["reason"] == "SwitchedToBackup"
    # two switches between polls: an Event and a histogram sample each; the same state again: nothing
    state = SwitchState("primary", (START, TO_BACKUP, TO_SLATE, BACK))
    back = plan_input(_seen(inp, observation=_observed(True, switch=state), previous=on_backup.status))
    assert [(e.type, e.reason) for e in back.events] == [("Warning", "SwitchedToSlate"), ("Normal", "SwitchedToPrimary")]
    assert back.switch_gaps == (("slate", 301), ("primary", 40)) and back.status["lastSwitch"]["to"] == "primary"
    again = plan_input(_seen(inp, observation=_observed(True, switch=state), previous=back.status))
    assert again.events == () and again.switch_gaps == ()


def test_backup_input_without_the_switch_state_says_on_air_unknown():
    inp = _input(publishSecretRef={"name": "p", "key": "k"}, backup={"protocol": "srt", "port": 21000})
    status = plan_input(_seen(inp, observation=_observed(True))).status
    assert "activeSource" not in status and _cond(status, "OnAir")["status"] == "Unknown"


def test_fallback_only_input_follows_the_readers_path():
    inp = _input(fallback={})
    live = plan_input(_seen(inp, observation=_observed(True, online=True), previous={"activeSource": "fallback"}))
    assert live.status["activeSource"] == "primary"
    assert [(e.type, e.reason) for e in live.events] == [("Normal", "SourceLive"), ("Normal", "SwitchedToPrimary")]
    slate = plan_input(_seen(inp, observation=_observed(True, online=False), previous=live.status))
    assert slate.status["activeSource"] == "fallback"
    assert ("Warning", "SwitchedToSlate") in [(e.type, e.reason) for e in slate.events]


def test_failure_is_failed_with_the_reason_and_one_event():
    decision = plan_failure(BODY, {}, "SecretNotAllowed", "the Secret named by spec.publishSecretRef ...")
    assert decision.status["phase"] == "Failed" and decision.status["endpoint"] == ""
    assert _cond(decision.status, "Ready")["reason"] == "SecretNotAllowed"
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "SecretNotAllowed")]
    again = plan_failure(BODY, decision.status, "SecretNotAllowed", "the Secret named by spec.publishSecretRef ...")
    assert again.events == ()


def test_a_replica_that_has_not_polled_yet_keeps_the_phase():
    assert plan_input(_seen(observation=None, previous={"phase": "Live"})).status["phase"] == "Live"
    assert plan_input(_seen(observation=None, previous={"phase": "Waiting"})).status["phase"] == "Waiting"
    assert plan_input(_seen(observation=None, previous={})).status["phase"] == "Waiting"
    assert plan_input(_seen(router_ready=False, previous={"phase": "Live"})).status["phase"] == "Pending"


def _monitored(ready: bool, active: frozenset[str] = frozenset(), running: bool = True) -> InputObservation:
    obs = _observed(ready)
    return dataclasses.replace(obs, confidence=ConfidenceState(running, 5.0, active))


def test_black_frozen_silent_only_with_the_monitor():
    plain = plan_input(_seen(observation=_observed(True))).status
    assert {c["type"] for c in plain["conditions"]} == {"Ready", "Receiving"}
    status = plan_input(_seen(observation=_monitored(True), monitored=True)).status
    assert [(c["type"], c["status"]) for c in status["conditions"][2:]] == [
        ("Black", "False"), ("Frozen", "False"), ("Silent", "False")]  # fmt: skip


def test_black_set_and_cleared_once_each_with_no_write_while_steady():
    live = plan_input(_seen(observation=_monitored(True), monitored=True, previous={})).status
    black = plan_input(_seen(observation=_monitored(True, frozenset({"black"})), monitored=True, previous=live))
    assert _cond(black.status, "Black")["status"] == "True"
    assert [(e.type, e.reason) for e in black.events] == [("Warning", "BlackPicture")]
    # steady: the same status again (nothing to write), no Event
    again = plan_input(_seen(observation=_monitored(True, frozenset({"black"})), monitored=True, previous=black.status))
    assert again.status == black.status and again.events == ()
    cleared = plan_input(_seen(observation=_monitored(True), monitored=True, previous=black.status))
    assert [(e.type, e.reason) for e in cleared.events] == [("Normal", "BlackCleared")]
    # the source going away is SourceLost's news; Black turns Unknown, which also clears it
    lost = plan_input(_seen(observation=_monitored(False, frozenset({"black"})), monitored=True, previous=black.status))
    assert [(e.type, e.reason) for e in lost.events] == [("Warning", "SourceLost"), ("Normal", "BlackCleared")]
    assert _cond(lost.status, "Black")["reason"] == "NotMonitoring"


def test_a_replica_that_has_not_polled_yet_keeps_black_and_posts_nothing():
    black = plan_input(_seen(observation=_monitored(True, frozenset({"black"})), monitored=True,
                             previous=plan_input(_seen(observation=_monitored(True), monitored=True)).status))  # fmt: skip
    took_over = plan_input(_seen(observation=None, monitored=True, previous=black.status))
    assert took_over.events == ()
    kinds = ("Black", "Frozen", "Silent")
    assert [_cond(took_over.status, k) for k in kinds] == [_cond(black.status, k) for k in kinds]
    # its first poll sees the picture still black: nothing to post either
    polled = plan_input(_seen(observation=_monitored(True, frozenset({"black"})), monitored=True,
                              previous=took_over.status))  # fmt: skip
    assert polled.events == () and polled.status == black.status
    # a router that is not ready is no takeover: Unknown, and Black clears
    down = plan_input(_seen(router_ready=False, observation=None, monitored=True, previous=black.status))
    assert _cond(down.status, "Black")["status"] == "Unknown"
