"""Pure status logic: a table of pod states, conditions, reconnect carry-over."""

from datetime import UTC, datetime

import pytest

from streamdist.status import (
    Cond,
    PodView,
    backoff_allowed,
    carry_reconnects,
    conditions,
    input_phase,
    one_line_error,
    output_phase,
    status_changed,
)


def pod(state=None, last=None, restarts=0, phase="Running", deleting=False, scheduled=None):
    body = {"metadata": {"name": "o-1"}, "status": {"phase": phase, "containerStatuses": [
        {"name": "ffmpeg", "restartCount": restarts, "state": state or {}, "lastState": last or {}}]}}
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-11-24T20:00:00Z"
    if scheduled:
        body["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                         "message": scheduled}]
        body["status"]["containerStatuses"] = []
    return PodView.from_pod(body)


RUNNING = {"running": {"startedAt": "2026-11-24T20:00:00Z"}}
CRASH = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}}
LAST = {"terminated": {"exitCode": 1, "reason": "Error",
                       "message": "frame=1\n[rtmp @ 0x1] Cannot open connection tcp://h:1935\nrtmp://h/app/SECRETKEY: Connection refused\n"}}


@pytest.mark.parametrize(
    ("view", "receiving", "phase", "reason"),
    [
        (None, None, "Pending", "PodPending"),
        (pod(deleting=True, state=RUNNING), True, "Pending", "PodPending"),
        (pod(phase="Pending", scheduled="0/2 nodes are available"), None, "Pending", "Unschedulable"),
        (pod(phase="Pending", state={"waiting": {"reason": "ContainerCreating"}}), None, "Connecting", "Starting"),
        (pod(state=RUNNING), True, "Streaming", "Streaming"),
        (pod(state=RUNNING), None, "Streaming", "Streaming"),
        (pod(state=RUNNING), False, "Connecting", "InputNotReceiving"),
        (pod(state=RUNNING, restarts=3, last=LAST), True, "Streaming", "Streaming"),
        (pod(state=CRASH, restarts=2, last=LAST), True, "Reconnecting", "Reconnecting"),
        (pod(state={"terminated": {"exitCode": 1, "reason": "Error", "message": "boom"}}), True, "Reconnecting",
         "Reconnecting"),
        (pod(state={"waiting": {"reason": "ContainerCreating"}}, restarts=1, last=LAST), True, "Reconnecting",
         "Reconnecting"),
        (pod(phase="Pending", state={"waiting": {"reason": "ImagePullBackOff", "message": "pull failed"}}), True,
         "Failed", "ImagePullBackOff"),
        (pod(phase="Pending", state={"waiting": {"reason": "ErrImagePull"}}), True, "Failed", "ErrImagePull"),
        (pod(phase="Pending", state={"waiting": {"reason": "CreateContainerConfigError",
                                                 "message": 'secret "yt" not found'}}), True, "Failed",
         "CreateContainerConfigError"),
    ],
)
def test_output_phase_table(view, receiving, phase, reason):
    got = output_phase(view, receiving)
    assert (got.phase, got.reason) == (phase, reason)


def test_reconnecting_message_is_ffmpegs_last_line_masked():
    got = output_phase(pod(state=CRASH, restarts=2, last=LAST), True)
    assert got.message == "rtmp://h/app/***: Connection refused"
    assert "SECRETKEY" not in got.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (None, ""),
        ("", ""),
        ("\n\n", ""),
        ("one\ntwo\n", "two"),
        ("x" * 1000, "x" * 300),
        ("srt://h:1?passphrase=SECRET&mode=caller: Connection timed out", "srt://h:1?passphrase=***&mode=caller: Connection timed out"),
    ],
)
def test_one_line_error(text, line):
    assert one_line_error(text) == line


def test_conditions_keep_transition_time_when_status_unchanged():
    first = conditions(None, [Cond("Ready", "False", "A", "a")], 1, "2026-01-01T00:00:00Z")
    same = conditions(first, [Cond("Ready", "False", "B", "b")], 2, "2026-01-01T00:01:00Z")
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["observedGeneration"] == 2
    moved = conditions(same, [Cond("Ready", "True", "C", "c")], 2, "2026-01-01T00:02:00Z")
    assert moved[0]["lastTransitionTime"] == "2026-01-01T00:02:00Z"
    assert set(moved[0]) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}


def test_status_changed_only_on_difference():
    current = {"phase": "Streaming", "reconnects": 2, "extra": 1}
    assert not status_changed(current, {"phase": "Streaming", "reconnects": 2})
    assert status_changed(current, {"phase": "Streaming", "reconnects": 3})
    assert status_changed(None, {"phase": "Pending"})


@pytest.mark.parametrize(
    ("previous", "pod_name", "restarts", "expected"),
    [
        (None, "o-a", 0, (0, 0)),
        ({"pod": "o-a", "reconnects": 2, "reconnectsCarried": 0}, "o-a", 3, (3, 0)),
        # same pod, restart count read stale: never goes down
        ({"pod": "o-a", "reconnects": 5, "reconnectsCarried": 0}, "o-a", 3, (5, 0)),
        # replaced after a failure (back-off, stall, deleted by hand): old count plus the replacement
        ({"pod": "o-a", "reconnects": 5, "reconnectsCarried": 0, "lastReplacement": {"reason": "BackoffReplaced"}},
         "o-b", 0, (6, 6)),
        ({"pod": "o-a", "reconnects": 5, "reconnectsCarried": 0, "lastReplacement": {"reason": "Stalled"}},
         "o-b", 2, (8, 6)),
        ({"pod": "o-a", "reconnects": 5, "reconnectsCarried": 0, "lastReplacement": {"reason": "PodDeleted"}},
         "o-b", 0, (6, 6)),
        # a planned replacement (spec, Secret, the input's tracks changed) is no reconnect
        ({"pod": "o-a", "reconnects": 0, "reconnectsCarried": 0, "lastReplacement": {"reason": "Updated"}},
         "o-b", 0, (0, 0)),
        ({"pod": "o-a", "reconnects": 5, "reconnectsCarried": 0, "lastReplacement": {"reason": "SecretRotated"}},
         "o-b", 1, (6, 5)),
        # running twice with the same inputs gives the same answer
        ({"pod": "o-b", "reconnects": 8, "reconnectsCarried": 6}, "o-b", 2, (8, 6)),
        # after a suspend the count resumes from where it stood
        ({"pod": "", "reconnects": 5, "reconnectsCarried": 5, "phase": "Suspended"}, "o-c", 1, (6, 5)),
    ],
)
def test_carry_reconnects(previous, pod_name, restarts, expected):
    assert carry_reconnects(previous, pod_name, restarts) == expected


@pytest.mark.parametrize(("restarts", "delay"), [(1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (9, 30)])
def test_backoff_doubles_to_cap(restarts, delay):
    assert backoff_allowed(2, 30, restarts) == delay


@pytest.mark.parametrize(
    ("ready", "receiving", "phase", "recv_status"),
    [
        (False, None, "Pending", "Unknown"),
        (True, None, "Waiting", "Unknown"),
        (True, False, "Waiting", "False"),
        (True, True, "Live", "True"),
    ],
)
def test_input_phase(ready, receiving, phase, recv_status):
    got, ready_c, recv_c = input_phase(ready, receiving)
    assert got == phase
    assert ready_c.status == ("True" if ready else "False")
    assert recv_c.status == recv_status


def test_running_since_parsed():
    assert pod(state=RUNNING).running_since == datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


def test_one_line_error_skips_ffmpegs_epilogue():
    log = ("[rtsp @ 0x1] method ANNOUNCE failed\n"
           "Could not write header for output file #0 (incorrect codec parameters ?): Connection refused\n"
           "Error initializing output stream 0:1 -- \nConversion failed!\n")
    assert one_line_error(log).endswith("Connection refused")
