"""plan_output, table-tested: every phase and reason, back-off, stall, suspend, replace,
planned replacements, and what it remembers. No cluster: SeenOutput is built by hand."""

from datetime import UTC, datetime, timedelta

import pytest

from streamdist import render, urls
from streamdist.models import parse_output
from streamdist.output_plan import (
    REPLACE_GRACE_SECONDS,
    SERVICE_DELETED,
    STALL_SECONDS,
    Blocked,
    Flowing,
    SeenOutput,
    plan_output,
)
from streamdist.schedule import Position
from streamdist.settings import Settings

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings()
RECEIVING = {"phase": "Live", "tracks": ["H264", "MPEG-4 Audio"],
             "conditions": [{"type": "Receiving", "status": "True", "reason": "SourceLive", "message": "live"}]}
INPUT = {"metadata": {"name": "cam", "namespace": "live"}, "spec": {"maxOutputs": 2}, "status": RECEIVING}


def _output(url="udp://h.example:5000", **spec):
    return parse_output({"metadata": {"name": "o", "namespace": "live", "uid": "u-o", "generation": 3},
                         "spec": {"input": "cam", "url": url, **spec}})


def _seen(out=None, **kw):
    out = out or _output()
    base = dict(body={"metadata": {"name": "o", "namespace": "live", "uid": "u-o", "generation": 3}}, output=out,
                destination=urls.parse(out.spec.url or "udp://h.example:5000"), input_body=INPUT,
                input_status=RECEIVING, siblings=(("2026-01-01T00:00:00Z", "o"),), router_exists=True, now=NOW,
                settings=SETTINGS)
    return SeenOutput(**{**base, **kw})


def _desired(seen):
    """The pod plan_output wants for `seen` (rendered the same way)."""
    from streamdist.output_plan import _render_plan

    return render.render_output(seen.output, _render_plan(seen, seen.destination), SETTINGS)[0]


def _pod(name, *, state=None, restarts=0, last=None, deleting=False, ip="10.0.0.5", annotations=None):
    meta = {"name": name, "uid": f"uid-{name}", "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-29T11:59:00Z"
    return {"metadata": meta, "status": {"phase": "Running", "podIP": ip, "containerStatuses": [
        {"name": "ffmpeg", "restartCount": restarts, "state": state or {}, "lastState": last or {}}]}}


RUNNING = {"running": {"startedAt": "2026-11-29T11:50:00Z"}}


def _crash(finished_ago: float):
    finished = (NOW - timedelta(seconds=finished_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ({"waiting": {"reason": "CrashLoopBackOff"}},
            {"terminated": {"exitCode": 1, "reason": "Error", "message": "x: Connection refused",
                            "finishedAt": finished}})


def _ready(decision):
    return next(c for c in decision.status["conditions"] if c["type"] == "Ready")


# --- no pod: why ---------------------------------------------------------------------


@pytest.mark.parametrize(("seen", "phase", "reason"), [
    (_seen(output=None, invalid="spec.url: bad"), "Invalid", "InvalidSpec"),
    (_seen(blocked=Blocked("Failed", "SecretNotAllowed", "m"), destination=None), "Failed", "SecretNotAllowed"),
    (_seen(blocked=Blocked("Failed", "ForbiddenDestination", "m"), destination=None), "Failed",
     "ForbiddenDestination"),
    (_seen(blocked=Blocked("Invalid", "InvalidURL", "m"), destination=None), "Invalid", "InvalidURL"),
    (_seen(_output(suspend=True)), "Suspended", "Suspended"),
    (_seen(input_body=None, input_status={}), "Failed", "InputNotFound"),
    (_seen(siblings=(("1", "a"), ("2", "b"), ("3", "o"))), "Failed", "TooManyOutputs"),
    (_seen(router_exists=False), "Pending", "InputNotReady"),
    (_seen(conflict="Service 'o' already exists and belongs to StreamInput 'o'"), "Failed", "NameConflict"),
])
def test_blocked_outputs_have_no_pod_and_say_why(seen, phase, reason):
    seen = SeenOutput(**{**seen.__dict__, "pods": (_pod("o-old", state=RUNNING),)})
    decision = plan_output(seen)
    assert decision.create is None
    assert [d.name for d in decision.deletes] == ["o-old"]
    assert (decision.status["phase"], _ready(decision)["reason"]) == (phase, reason)
    assert decision.status["pod"] == ""
    quiet = phase == "Pending"
    assert [e.reason for e in decision.events] == ([] if quiet else [reason])


def test_a_stopped_listener_output_deletes_its_service_once():
    listener = _output("srt://:9000?mode=listener", suspend=True)
    assert plan_output(_seen(listener)).delete_service
    assert not plan_output(_seen(listener, extras=SERVICE_DELETED)).delete_service


# --- the pod ---------------------------------------------------------------------------


def test_no_pod_yet_creates_one_and_writes_nothing():
    seen = _seen()
    decision = plan_output(seen)
    assert decision.create == _desired(seen) and not decision.deletes
    assert decision.status is None and not decision.events


def test_an_old_revision_goes_before_the_new_one_is_created():
    seen = _seen(pods=(_pod("o-old", state=RUNNING),))
    decision = plan_output(seen)
    assert decision.create is None
    assert [(d.name, d.grace) for d in decision.deletes] == [("o-old", REPLACE_GRACE_SECONDS)]
    again = plan_output(_seen(pods=(_pod("o-old", state=RUNNING, deleting=True),)))
    assert not again.deletes and again.create is None, "a terminating pod is waited for, not deleted twice"
    gone = plan_output(_seen(pods=()))
    assert gone.create is not None


def test_a_planned_replacement_is_counted_once_with_its_reason_and_no_reconnect():
    seen = _seen(pods=(_pod("o-old", state=RUNNING),), previous={"pod": "o-old", "reconnects": 2, "replacements": 1})
    decision = plan_output(seen)
    assert decision.status["replacements"] == 2
    assert decision.status["lastReplacement"]["reason"] == "Updated"
    assert decision.status["lastReplacement"]["pod"] == "o-old"
    assert (decision.events[0].reason, decision.events[0].type) == ("Updated", "Normal")
    assert decision.status["reconnects"] == 2
    counted = {**seen.previous, **decision.status}
    again = plan_output(_seen(pods=(_pod("o-old", state=RUNNING),), previous=counted))
    assert again.status["replacements"] == 2 and not [e for e in again.events if e.reason == "Updated"]
    # the new pod, once streaming, carries the count without adding a reconnect
    new = _desired(_seen(previous=counted))["metadata"]["name"]
    streaming = plan_output(_seen(pods=(_pod(new, state=RUNNING),), previous={**counted, "pod": "o-old"}))
    assert streaming.status["reconnects"] == 2 and streaming.status["phase"] == "Streaming"


def test_a_rotated_secret_is_named_as_the_reason():
    keyed = parse_output({"metadata": {"name": "o", "namespace": "live", "uid": "u-o"},
                          "spec": {"input": "cam", "urlFrom": {"secretKeyRef": {"name": "k", "key": "url"}}}})
    old = _pod("o-old", state=RUNNING, annotations={render.SECRET_VERSION_ANNOTATION: "41"})
    decision = plan_output(_seen(keyed, destination=urls.parse("rtmp://h/app/k"), secret_version="42", pods=(old,)))
    assert decision.status["lastReplacement"]["reason"] == "SecretRotated"


@pytest.mark.parametrize(("state", "restarts", "last", "input_status", "flow", "phase", "reason"), [
    (RUNNING, 0, None, RECEIVING, Flowing(5000, 0.0), "Streaming", "Streaming"),
    (RUNNING, 0, None, {**RECEIVING, "conditions": [{"type": "Receiving", "status": "False", "reason": "NoSource",
                                                     "message": "m"}]}, None, "Connecting", "InputNotReceiving"),
    ({"waiting": {"reason": "ContainerCreating"}}, 0, None, RECEIVING, None, "Connecting", "Starting"),
    ({"waiting": {"reason": "ImagePullBackOff", "message": "no"}}, 0, None, RECEIVING, None, "Failed",
     "ImagePullBackOff"),
    (*_crash(1.0)[:1], 2, _crash(1.0)[1], RECEIVING, None, "Reconnecting", "Reconnecting"),
])
def test_phase_of_a_running_output(state, restarts, last, input_status, flow, phase, reason):
    seen = _seen(input_status=input_status, flow=flow)
    pod = _pod(_desired(seen)["metadata"]["name"], state=state, restarts=restarts, last=last)
    decision = plan_output(SeenOutput(**{**seen.__dict__, "pods": (pod,)}))
    assert (decision.status["phase"], _ready(decision)["reason"]) == (phase, reason)
    assert decision.create is None and not decision.deletes


def test_streaming_resets_failures_and_writes_the_bitrate():
    seen = _seen(flow=Flowing(5200, 0.0), failures=3)
    pod = _pod(_desired(seen)["metadata"]["name"], state=RUNNING)
    decision = plan_output(SeenOutput(**{**seen.__dict__, "pods": (pod,)}))
    assert decision.failures == 0 and decision.status["bitrateKbps"] == 5200


# --- forced replacements -----------------------------------------------------------------


def test_backoff_held_too_long_is_replaced_and_counted_as_a_reconnect():
    state, last = _crash(finished_ago=60.0)  # delay 2, cap 30: 4 s allowed after 2 failures
    seen = _seen(previous={"pod": "x", "reconnects": 2})
    name = _desired(seen)["metadata"]["name"]
    seen = SeenOutput(**{**seen.__dict__, "previous": {"pod": name, "reconnects": 2},
                         "pods": (_pod(name, state=state, restarts=2, last=last),)})
    decision = plan_output(seen)
    assert decision.status["phase"] == "Reconnecting"
    assert decision.status["forcedReplacements"] == 1 and decision.status["replacements"] == 1
    assert decision.status["lastReplacement"] == {"reason": "BackoffReplaced", "pod": name, "time": "2026-11-29T12:00:00Z"}
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "BackoffReplaced")]
    assert decision.failures == 1 and decision.reset_flow
    replaced = {**seen.previous, **decision.status}
    assert _desired(_seen(previous=replaced))["metadata"]["name"] != name, "a forced replacement is a new pod"


def test_backoff_within_the_schedule_is_left_to_the_kubelet():
    state, last = _crash(finished_ago=1.0)
    seen = _seen()
    name = _desired(seen)["metadata"]["name"]
    decision = plan_output(SeenOutput(**{**seen.__dict__, "pods": (_pod(name, state=state, restarts=1, last=last),)}))
    assert decision.status["phase"] == "Reconnecting" and "forcedReplacements" not in decision.status


@pytest.mark.parametrize(("stalled", "live", "replaced"), [
    (STALL_SECONDS + 1, True, True), (STALL_SECONDS - 1, True, False), (STALL_SECONDS + 1, False, False),
])
def test_a_stalled_ffmpeg_is_replaced_only_while_its_input_is_live(stalled, live, replaced):
    status = RECEIVING if live else {**RECEIVING, "phase": "Waiting"}
    seen = _seen(flow=Flowing(0, stalled), input_status=status)
    pod = _pod(_desired(seen)["metadata"]["name"], state=RUNNING)
    decision = plan_output(SeenOutput(**{**seen.__dict__, "pods": (pod,)}))
    assert ([e.reason for e in decision.events] == ["Stalled"]) is replaced
    if replaced:
        assert decision.status["lastError"].startswith("stalled: FFmpeg pulled no data")


def test_a_pod_deleted_by_hand_is_replaced():
    seen = _seen()
    name = _desired(seen)["metadata"]["name"]
    decision = plan_output(_seen(previous={"pod": name, "reconnects": 0}, pods=()))
    assert decision.status["lastReplacement"]["reason"] == "PodDeleted" and decision.create is None


def test_the_same_observation_gives_the_same_decision():
    seen = _seen(pods=(_pod("o-old", state=RUNNING),), previous={"pod": "o-old"})
    assert plan_output(seen) == plan_output(seen)


# --- two outputs, one destination ----------------------------------------------------------


def test_the_newer_of_two_outputs_to_one_destination_stops():
    decision = plan_output(_seen(duplicate=True, pods=(_pod("o-1", state=RUNNING),)))
    assert (decision.status["phase"], _ready(decision)["reason"]) == ("Failed", "DuplicateDestination")
    assert [d.name for d in decision.deletes] == ["o-1"]


def test_no_new_pod_until_every_output_has_claimed_its_destination():
    assert plan_output(_seen(settled=False)).create is None
    assert plan_output(_seen(settled=True)).create is not None


def test_claims_pick_the_earliest_and_forget_the_gone():
    from streamdist.handlers.memory import Memory, OutputKey

    memory = Memory()
    a, b, c = OutputKey("ns", "a"), OutputKey("ns", "b"), OutputKey("other", "c")
    assert memory.claim(a, "d1", "2026-01-01T00:00:00Z") == []
    assert [p.name for p in memory.claim(b, "d1", "2026-01-02T00:00:00Z")] == ["a"]
    assert memory.claim(c, "d1", "2026-01-03T00:00:00Z") == [], "another namespace is another place"
    assert not memory.claimed([a, b, OutputKey("ns", "new")]) and memory.claimed([a, b])
    memory.forget(a)
    assert memory.claim(b, "d1", "2026-01-02T00:00:00Z") == []
    memory.claim(b, None, "2026-01-02T00:00:00Z")  # suspended: sends nowhere
    assert memory.claim(OutputKey("ns", "d"), "d1", "2026-01-04T00:00:00Z") == []
# --- the schedule --------------------------------------------------------------------------

OFF_AIR = Position(False, next_start=NOW + timedelta(minutes=10))
ON_AIR = Position(True, next_stop=NOW + timedelta(hours=2))
SCHEDULE = {"windows": [{"cron": "0 12 * * *", "duration": "2h"}]}


def test_off_air_by_schedule_has_no_pod_and_says_when_it_starts():
    seen = _seen(_output(schedule=SCHEDULE), window=OFF_AIR, pods=(_pod("o-old", state=RUNNING),),
                 previous={"phase": "Streaming", "pod": "o-old"})
    decision = plan_output(seen)
    assert decision.create is None and [d.name for d in decision.deletes] == ["o-old"]
    assert (decision.status["phase"], _ready(decision)["reason"]) == ("Scheduled", "OutsideWindow")
    assert decision.status["nextStart"] == "2026-11-29T12:10:00Z" and "nextStop" not in decision.status
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "WindowClosed")]
    assert decision.wake == NOW + timedelta(minutes=10)


def test_no_window_ahead_is_still_scheduled_and_wants_no_timer():
    decision = plan_output(_seen(_output(schedule=SCHEDULE), window=Position(False), previous={"phase": "Scheduled",
                                                                                                "nextStart": "x"}))
    assert (decision.status["phase"], _ready(decision)["reason"]) == ("Scheduled", "NoWindowAhead")
    assert decision.status["nextStart"] is None, "the stale nextStart is cleared"
    assert decision.wake is None and not decision.events


def test_a_window_opening_creates_the_pod_first_and_says_so_with_its_status():
    previous = {"phase": "Scheduled", "nextStart": "2026-11-29T12:00:00Z"}
    seen = _seen(_output(schedule=SCHEDULE), window=ON_AIR, previous=previous)
    decision = plan_output(seen)
    assert decision.create == _desired(seen) and decision.status is None and not decision.events
    assert decision.wake == NOW + timedelta(hours=2)
    # the pod's watch event: the status, with the window's Event (instead of "Streaming")
    pod = _pod(_desired(seen)["metadata"]["name"], state=RUNNING)
    running = plan_output(SeenOutput(**{**seen.__dict__, "pods": (pod,)}))
    assert running.status["phase"] == "Streaming"
    assert running.status["nextStop"] == "2026-11-29T14:00:00Z" and running.status["nextStart"] is None
    assert [(e.type, e.reason) for e in running.events] == [("Normal", "WindowOpened")]


def test_on_air_by_schedule_runs_as_usual_with_its_stop():
    seen = _seen(_output(schedule=SCHEDULE), window=ON_AIR, flow=Flowing(5000, 0.0))
    pod = _pod(_desired(seen)["metadata"]["name"], state=RUNNING)
    decision = plan_output(SeenOutput(**{**seen.__dict__, "pods": (pod,)}))
    assert decision.status["phase"] == "Streaming" and decision.status["nextStop"] == "2026-11-29T14:00:00Z"
    assert decision.create is None and not decision.deletes
    assert _desired(seen) == _desired(_seen()), "a schedule changes no pod: a restart mid-window re-creates nothing"


def test_a_first_pod_inside_a_window_writes_no_status_before_its_watch_event():
    decision = plan_output(_seen(_output(schedule=SCHEDULE), window=ON_AIR))
    assert decision.create is not None and decision.status is None and decision.wake == ON_AIR.wake


@pytest.mark.parametrize("window", [OFF_AIR, ON_AIR])
def test_suspend_wins_over_any_window(window):
    seen = _seen(_output(schedule=SCHEDULE, suspend=True), window=window, pods=(_pod("o-old", state=RUNNING),),
                 previous={"phase": "Scheduled", "nextStart": "2026-11-29T12:10:00Z"})
    decision = plan_output(seen)
    assert decision.status["phase"] == "Suspended" and decision.create is None and decision.deletes
    assert decision.status["nextStart"] is None and decision.wake is None


def test_an_invalid_schedule_is_refused_and_runs_nothing():
    message = "spec.schedule.windows[0].timeZone: not a time zone of the operator's time zone database"
    seen = _seen(_output(schedule=SCHEDULE), schedule_error=message, pods=(_pod("o-old", state=RUNNING),))
    decision = plan_output(seen)
    assert (decision.status["phase"], _ready(decision)["reason"]) == ("Invalid", "InvalidSchedule")
    assert _ready(decision)["message"] == message and decision.deletes and decision.wake is None
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "InvalidSchedule")]


def test_outside_a_window_a_missing_input_waits_for_the_window():
    decision = plan_output(_seen(_output(schedule=SCHEDULE), window=OFF_AIR, input_body=None, input_status={}))
    assert decision.status["phase"] == "Scheduled"
    opened = plan_output(_seen(_output(schedule=SCHEDULE), window=ON_AIR, input_body=None, input_status={},
                               previous={"phase": "Scheduled"}))
    assert opened.status["phase"] == "Failed" and [e.reason for e in opened.events] == ["InputNotFound"]


def test_a_schedule_removed_clears_its_fields():
    decision = plan_output(_seen(previous={"phase": "Scheduled", "nextStart": "2026-11-29T12:10:00Z"},
                                 pods=(_pod(_desired(_seen())["metadata"]["name"], state=RUNNING),)))
    assert decision.status["nextStart"] is None and "nextStop" not in decision.status and decision.wake is None
    plain = plan_output(_seen(pods=(_pod(_desired(_seen())["metadata"]["name"], state=RUNNING),)))
    assert "nextStart" not in plain.status and "nextStop" not in plain.status, "no schedule, no schedule fields"


@pytest.mark.parametrize(("before", "phase", "expected"), [
    ("Scheduled", "Pending", ("Normal", "WindowOpened")),
    ("Scheduled", "Streaming", ("Normal", "WindowOpened")),
    ("Streaming", "Scheduled", ("Normal", "WindowClosed")),
    ("Reconnecting", "Scheduled", ("Normal", "WindowClosed")),
    ("Pending", "Scheduled", ("Normal", "WindowClosed")),
    (None, "Scheduled", ("Normal", "OutsideWindow")),
    ("Suspended", "Scheduled", ("Normal", "OutsideWindow")),
    ("Scheduled", "Scheduled", None),
    ("Scheduled", "Failed", ("Warning", "OutsideWindow")),
])
def test_the_event_policy_for_windows(before, phase, expected):
    from streamdist import events

    event = events.transition({"phase": before} if before else {}, {"phase": phase}, "OutsideWindow", "m")
    assert (None if event is None else (event.type, event.reason)) == expected
