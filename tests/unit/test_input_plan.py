"""plan_input and plan_failure, table-tested: phases, conditions, Events and the switch
of source, from hand-built observations."""

from datetime import UTC, datetime

import pytest

from streamdist import mediamtx
from streamdist.handlers.memory import InputObservation
from streamdist.input_plan import SeenInput, plan_failure, plan_input
from streamdist.models import parse_input

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BODY = {"metadata": {"name": "cam", "namespace": "live", "uid": "u", "generation": 2}}


def _input(**spec):
    return parse_input({**BODY, "spec": {"protocol": "udp", **spec}})


def _observed(ready: bool, online: bool | None = None, relay: str | None = None) -> InputObservation:
    sample = mediamtx.PathSample(name="cam", ready=ready, online=ready if online is None else online, ready_time=None,
                                 source_type="rtspSession", source_id="s", tracks=("H264",) if ready else (),
                                 bytes_received=0, bytes_sent=0, readers=(), sampled_at=0.0)
    return InputObservation(mediamtx.input_health(None, sample), sample, relay=relay)


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


def test_switch_to_backup_and_back_is_an_event_each_way():
    inp = _input(publishSecretRef={"name": "p", "key": "k"}, backup={"protocol": "srt", "port": 21000})
    on_backup = plan_input(_seen(inp, observation=_observed(True, relay="backup"),
                                 previous={"phase": "Live", "activeSource": "primary"}))
    assert on_backup.status["activeSource"] == "backup"
    assert [(e.type, e.reason) for e in on_backup.events] == [("Warning", "SwitchedToBackup")]
    back = plan_input(_seen(inp, observation=_observed(True, relay="primary"), previous=on_backup.status))
    assert [(e.type, e.reason) for e in back.events] == [("Normal", "SwitchedToPrimary")]


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
