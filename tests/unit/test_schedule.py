"""The schedule, table-tested: cron on the wall clock (daylight saving in four zones,
month ends, leap days), windows that overlap or touch, the lead, and every rule's
refusal. No cluster.

The expected instants of the cron tables are what robfig/cron v3.0.1 (the library
Kubernetes CronJob uses) computes for the same expression, zone and start: a time the
clock skips does not occur, a time it passes twice occurs twice.
"""

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from streamdist.models import Schedule, Window
from streamdist.schedule import (
    CRON_RE,
    DURATION_RE,
    MAX_LEAD_SECONDS,
    MAX_WINDOWS,
    TIME_RE,
    ZONE_RE,
    Position,
    Recurring,
    ScheduleError,
    compile_schedule,
    last_start,
    locate,
    next_start,
    position,
)

REPO = Path(__file__).resolve().parents[2]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def cron(expr: str, zone: str = "UTC") -> Recurring:
    (window,) = compile_schedule(Schedule(windows=(Window(cron=expr, duration="1h", timeZone=zone),))).windows
    assert isinstance(window, Recurring)
    return window


# (zone, cron, after, the next starts as robfig/cron gives them)
CRON_CASES = [
    ("fall back, New York: 01:30 occurs twice", "America/New_York", "30 1 * * *", "2026-11-01T00:00:00Z",
     ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-02T06:30:00Z", "2026-11-03T06:30:00Z"]),
    ("fall back, New York: every hour", "America/New_York", "0 * * * *", "2026-11-01T04:00:00Z",
     ["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z"]),
    ("fall back, New York: steps in the repeated hour", "America/New_York", "*/30 1-2 1 11 *",
     "2026-11-01T04:00:00Z",
     ["2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z",
      "2026-11-01T07:00:00Z", "2026-11-01T07:30:00Z", "2027-11-01T05:00:00Z"]),
    ("spring forward, New York: 02:30 does not occur", "America/New_York", "30 2 * * *", "2026-03-07T00:00:00Z",
     ["2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"]),
    ("spring forward, Berlin: 02:30 does not occur", "Europe/Berlin", "30 2 * * *", "2026-03-28T00:00:00Z",
     ["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"]),
    ("spring forward, Berlin: a Sunday at 02:00 is skipped", "Europe/Berlin", "0 2 * * 0", "2026-03-20T00:00:00Z",
     ["2026-03-22T01:00:00Z", "2026-04-05T00:00:00Z"]),
    ("fall back, Berlin: 02:30 occurs twice", "Europe/Berlin", "30 2 * * *", "2026-10-24T00:00:00Z",
     ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"]),
    ("Berlin: Friday 18:55 keeps its wall-clock time across the change", "Europe/Berlin", "55 18 * * fri",
     "2026-10-20T00:00:00Z", ["2026-10-23T16:55:00Z", "2026-10-30T17:55:00Z", "2026-11-06T17:55:00Z"]),
    ("fall back, Sydney (April)", "Australia/Sydney", "30 2 * * *", "2026-04-03T00:00:00Z",
     ["2026-04-03T15:30:00Z", "2026-04-04T15:30:00Z", "2026-04-04T16:30:00Z", "2026-04-05T16:30:00Z"]),
    ("spring forward, Sydney (October)", "Australia/Sydney", "30 2 * * *", "2026-10-02T00:00:00Z",
     ["2026-10-02T16:30:00Z", "2026-10-04T15:30:00Z", "2026-10-05T15:30:00Z"]),
    ("spring forward by 30 min, Lord Howe", "Australia/Lord_Howe", "15 2 * * *", "2026-10-02T00:00:00Z",
     ["2026-10-02T15:45:00Z", "2026-10-04T15:15:00Z", "2026-10-05T15:15:00Z"]),
    ("fall back by 30 min, Lord Howe", "Australia/Lord_Howe", "45 1 * * *", "2026-04-03T00:00:00Z",
     ["2026-04-03T14:45:00Z", "2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z", "2026-04-05T15:15:00Z"]),
    ("month ends: the 31st skips short months", "America/New_York", "0 0 31 * *", "2026-01-31T05:00:00Z",
     ["2026-03-31T04:00:00Z", "2026-05-31T04:00:00Z", "2026-07-31T04:00:00Z"]),
    ("month ends: the 31st in UTC", "UTC", "0 0 31 * *", "2026-01-01T00:00:00Z",
     ["2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"]),
    ("leap day", "UTC", "0 0 29 2 *", "2026-01-01T00:00:00Z", ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
]


@pytest.mark.parametrize(("case", "zone", "expr", "after", "starts"), CRON_CASES, ids=[c[0] for c in CRON_CASES])
def test_next_start_counts_as_kubernetes_cronjob_does(case, zone, expr, after, starts):
    window, got, at = cron(expr, zone), [], utc(after)
    for _ in starts:
        at = next_start(window, at)
        got.append(at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert got == starts


@pytest.mark.parametrize(("case", "zone", "expr", "after", "starts"), CRON_CASES, ids=[c[0] for c in CRON_CASES])
def test_last_start_walks_the_same_instants_back(case, zone, expr, after, starts):
    window = cron(expr, zone)
    instants = [utc(s) for s in starts]
    for earlier, later in itertools.pairwise(instants):
        assert last_start(window, later) == later, "at the start itself, it is the last one"
        assert last_start(window, later - timedelta(seconds=1)) == earlier
        assert last_start(window, later - timedelta(microseconds=1)) == earlier
    assert next_start(window, instants[0] - timedelta(microseconds=1)) == instants[0]


def test_a_cron_that_matches_no_more_dates_has_no_next_start():
    window = cron("0 0 29 2 *")
    assert next_start(window, utc("2026-01-01T00:00:00Z")) == utc("2028-02-29T00:00:00Z")
    assert last_start(window, utc("2026-01-01T00:00:00Z")) == utc("2024-02-29T00:00:00Z")


# --- on air or off air --------------------------------------------------------------


def one_off(start: str, end: str) -> Window:
    return Window(start=start, end=end)


def every(expr: str, duration: str, zone: str | None = None) -> Window:
    return Window(cron=expr, duration=duration, timeZone=zone)


def at(schedule_windows, now: str, lead: int = 0) -> Position:
    return position(compile_schedule(Schedule(windows=tuple(schedule_windows), leadSeconds=lead)), utc(now))


SHOW = one_off("2026-05-01T19:00:00+02:00", "2026-05-01T21:30:00+02:00")
FRIDAYS = every("55 18 * * FRI", "2h35m", "Europe/Paris")  # 18:55-21:30 Paris time every Friday

POSITION_CASES = [
    ("before a one-off window", [SHOW], "2026-05-01T16:59:59Z", 0, Position(False, utc("2026-05-01T17:00:00Z"))),
    ("at its start: on air", [SHOW], "2026-05-01T17:00:00Z", 0, Position(True, None, utc("2026-05-01T19:30:00Z"))),
    ("inside", [SHOW], "2026-05-01T18:00:00Z", 0, Position(True, None, utc("2026-05-01T19:30:00Z"))),
    ("at its end: off air, none ahead", [SHOW], "2026-05-01T19:30:00Z", 0, Position(False)),
    ("lead: on air 10 s early", [SHOW], "2026-05-01T16:59:50Z", 10, Position(True, None, utc("2026-05-01T19:30:00Z"))),
    ("lead: not before", [SHOW], "2026-05-01T16:59:49Z", 10, Position(False, utc("2026-05-01T16:59:50Z"))),
    ("lead: the end stays exact", [SHOW], "2026-05-01T19:29:59Z", 10, Position(True, None, utc("2026-05-01T19:30:00Z"))),
    ("touching windows are one stretch",
     [one_off("2026-05-01T10:00:00Z", "2026-05-01T11:00:00Z"), one_off("2026-05-01T11:00:00Z", "2026-05-01T12:00:00Z")],
     "2026-05-01T10:30:00Z", 0, Position(True, None, utc("2026-05-01T12:00:00Z"))),
    ("overlapping windows are one stretch, listed in any order",
     [one_off("2026-05-01T11:30:00Z", "2026-05-01T13:00:00Z"), one_off("2026-05-01T10:00:00Z", "2026-05-01T12:00:00Z")],
     "2026-05-01T10:30:00Z", 0, Position(True, None, utc("2026-05-01T13:00:00Z"))),
    ("a window inside another ends nothing",
     [one_off("2026-05-01T10:00:00Z", "2026-05-01T14:00:00Z"), one_off("2026-05-01T11:00:00Z", "2026-05-01T12:00:00Z")],
     "2026-05-01T11:30:00Z", 0, Position(True, None, utc("2026-05-01T14:00:00Z"))),
    ("a gap of one second is a stop and a start",
     [one_off("2026-05-01T10:00:00Z", "2026-05-01T11:00:00Z"), one_off("2026-05-01T11:00:01Z", "2026-05-01T12:00:00Z")],
     "2026-05-01T10:30:00Z", 0, Position(True, None, utc("2026-05-01T11:00:00Z"))),
    ("a lead that closes the gap joins the windows",
     [one_off("2026-05-01T10:00:00Z", "2026-05-01T11:00:00Z"), one_off("2026-05-01T11:00:05Z", "2026-05-01T12:00:00Z")],
     "2026-05-01T10:30:00Z", 5, Position(True, None, utc("2026-05-01T12:00:00Z"))),
    ("between two windows: the nearer start",
     [one_off("2026-05-03T10:00:00Z", "2026-05-03T11:00:00Z"), one_off("2026-05-02T10:00:00Z", "2026-05-02T11:00:00Z")],
     "2026-05-01T00:00:00Z", 0, Position(False, utc("2026-05-02T10:00:00Z"))),
    ("weekly, Paris summer time", [FRIDAYS], "2026-05-01T16:00:00Z", 0, Position(False, utc("2026-05-01T16:55:00Z"))),
    ("weekly, on air", [FRIDAYS], "2026-05-01T17:00:00Z", 0, Position(True, None, utc("2026-05-01T19:30:00Z"))),
    ("weekly, after the show: next Friday", [FRIDAYS], "2026-05-01T19:30:00Z", 0,
     Position(False, utc("2026-05-08T16:55:00Z"))),
    ("weekly, Paris winter time", [FRIDAYS], "2026-10-31T00:00:00Z", 0, Position(False, utc("2026-11-06T17:55:00Z"))),
    ("duration is elapsed time across a transition",
     [every("30 0 * * *", "3h", "America/New_York")], "2026-11-01T05:00:00Z", 0,
     Position(True, None, utc("2026-11-01T07:30:00Z"))),
    ("recurring windows that touch are one stretch", [every("0 * * * *", "1h")], "2026-05-01T10:30:00Z", 0,
     Position(True, None, None)),
    ("recurring and one-off together: the one-off extends the stretch",
     [every("0 10 * * *", "1h"), one_off("2026-05-01T11:00:00Z", "2026-05-01T11:30:00Z")], "2026-05-01T10:10:00Z", 0,
     Position(True, None, utc("2026-05-01T11:30:00Z"))),
    ("a window in the spring-forward gap does not open that day",
     [every("30 2 * * *", "10m", "Europe/Berlin")], "2026-03-29T00:00:00Z", 0,
     Position(False, utc("2026-03-30T00:30:00Z"))),
]


@pytest.mark.parametrize(("case", "windows", "now", "lead", "expected"), POSITION_CASES,
                         ids=[c[0] for c in POSITION_CASES])
def test_position(case, windows, now, lead, expected):
    assert at(windows, now, lead) == expected


def test_wake_is_the_next_boundary():
    assert at([SHOW], "2026-05-01T16:00:00Z").wake == utc("2026-05-01T17:00:00Z")
    assert at([SHOW], "2026-05-01T18:00:00Z").wake == utc("2026-05-01T19:30:00Z")
    assert at([SHOW], "2026-05-02T00:00:00Z").wake is None


def test_a_position_is_reused_until_its_boundary():
    schedule = Schedule(windows=(SHOW,))
    placed = locate(schedule, utc("2026-05-01T16:00:00Z"))
    assert locate(schedule, utc("2026-05-01T16:59:59Z"), placed) is placed
    later = locate(schedule, utc("2026-05-01T17:00:00Z"), placed)
    assert later is not placed and later.position.inside
    other = Schedule(windows=(SHOW,), leadSeconds=5)
    assert locate(other, utc("2026-05-01T16:00:00Z"), placed) is not placed, "another schedule: worked out again"
    assert locate(schedule, utc("2026-05-01T15:00:00Z"), placed) is not placed, "the clock went back"


# --- refusals ---------------------------------------------------------------------------

CANARY = "Zz9Canary"

REFUSED = [
    ("no windows", Schedule(windows=()), "spec.schedule.windows: must list at least one window"),
    ("too many windows", Schedule(windows=(SHOW,) * (MAX_WINDOWS + 1)), f"at most {MAX_WINDOWS} windows"),
    ("lead too long", Schedule(windows=(SHOW,), leadSeconds=MAX_LEAD_SECONDS + 1), "spec.schedule.leadSeconds:"),
    ("negative lead", Schedule(windows=(SHOW,), leadSeconds=-1), "spec.schedule.leadSeconds:"),
    ("neither kind", Schedule(windows=(Window(),)), "spec.schedule.windows[0]: a window is either one-off"),
    ("both kinds", Schedule(windows=(Window(start="2026-05-01T19:00:00Z", end="2026-05-01T20:00:00Z", cron="* * * * *",
                                            duration="1h"),)), "a window is either one-off"),
    ("start without end", Schedule(windows=(Window(start="2026-05-01T19:00:00Z"),)), "a window is either one-off"),
    ("cron without duration", Schedule(windows=(Window(cron="* * * * *"),)), "a window is either one-off"),
    ("time zone on a one-off window",
     Schedule(windows=(Window(start="2026-05-01T19:00:00Z", end="2026-05-01T20:00:00Z", timeZone="UTC"),)),
     "spec.schedule.windows[0].timeZone: only recurring windows"),
    ("no offset", Schedule(windows=(SHOW, one_off(f"2026-05-01T19:00:00{CANARY}", "2026-05-01T20:00:00Z"))),
     "spec.schedule.windows[1].start: must be an RFC 3339 time with an offset"),
    ("local time", Schedule(windows=(one_off("2026-05-01T19:00:00", "2026-05-01T20:00:00Z"),)),
     "windows[0].start: must be an RFC 3339 time with an offset"),
    ("no such day", Schedule(windows=(one_off("2026-05-01T19:00:00Z", "2026-02-30T20:00:00Z"),)),
     "windows[0].end: not a valid date and time"),
    ("end before start", Schedule(windows=(one_off("2026-05-01T19:00:00+02:00", "2026-05-01T16:59:59Z"),)),
     "windows[0].end: must be after start"),
    ("end at start", Schedule(windows=(one_off("2026-05-01T19:00:00+02:00", "2026-05-01T17:00:00+00:00"),)),
     "windows[0].end: must be after start"),
    ("six cron fields", Schedule(windows=(every("0 0 0 * * *", "1h"),)), "windows[0].cron: must be five cron fields"),
    ("cron macro", Schedule(windows=(every("@daily", "1h"),)), "windows[0].cron: must be five cron fields"),
    ("Quartz's L", Schedule(windows=(every("0 0 L * *", "1h"),)), "windows[0].cron: must be five cron fields"),
    ("minute out of range", Schedule(windows=(every("60 0 * * *", "1h"),)), "windows[0].cron: bad minute"),
    ("not a month name", Schedule(windows=(every("0 0 1 Zzz *", "1h"),)), "windows[0].cron: bad month"),
    ("a date that never occurs", Schedule(windows=(every("0 0 30 2 *", "1h"),)), "windows[0].cron: bad day-of-month"),
    ("zero duration", Schedule(windows=(every("0 0 * * *", "0h0m"),)), "windows[0].duration: must be a positive"),
    ("empty duration", Schedule(windows=(every("0 0 * * *", ""),)), "windows[0].duration: must be a positive"),
    ("fractional duration", Schedule(windows=(every("0 0 * * *", "1.5h"),)), "windows[0].duration: must be a positive"),
    ("not a zone name", Schedule(windows=(every("0 0 * * *", "1h", f"../{CANARY}"),)),
     "windows[0].timeZone: must be an IANA time zone name"),
    ("unknown zone", Schedule(windows=(every("0 0 * * *", "1h", f"Mars/{CANARY}"),)),
     "windows[0].timeZone: not a time zone of the operator's time zone database"),
]


@pytest.mark.parametrize(("case", "schedule", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_the_field_and_the_rule_never_the_value(case, schedule, message):
    with pytest.raises(ScheduleError) as exc:
        compile_schedule(schedule)
    assert message in str(exc.value)
    assert CANARY.lower() not in str(exc.value).lower()
    assert str(exc.value).startswith("spec.schedule.")


def test_accepted_forms():
    compiled = compile_schedule(Schedule(windows=(
        one_off("2026-05-01T19:00:00.250+02:00", "2026-05-01T21:30:00Z"),
        every("55 18 ? * mon-fri", "2h35m", "America/Argentina/Buenos_Aires"),
        every("*/15 0-23/2 1,15 JAN-MAR,dec *", "45s"),
        every("  0   6 * * 0  ", "90m", "Etc/GMT+5"),
    ), leadSeconds=MAX_LEAD_SECONDS))
    assert len(compiled.windows) == 4 and compiled.lead == timedelta(seconds=MAX_LEAD_SECONDS)
    assert compiled.windows[0].start == utc("2026-05-01T17:00:00.250Z")
    assert compiled.windows[1].cron == "55 18 * * MON-FRI"
    assert compiled.windows[2].zone == ZoneInfo("UTC"), "no timeZone: UTC"


# --- the CRD's CEL rules use the same patterns -----------------------------------------------


def _crd_window():
    crd = yaml.safe_load((REPO / "crds" / "streamoutputs.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec["properties"]["schedule"]


def test_the_crd_checks_the_same_patterns_and_limits():
    schedule = _crd_window()
    items = schedule["properties"]["windows"]["items"]["properties"]
    rules = {name: " ".join(r["rule"] for r in prop["x-kubernetes-validations"]) for name, prop in items.items()}
    for name, pattern in (("start", TIME_RE), ("end", TIME_RE), ("cron", CRON_RE), ("duration", DURATION_RE),
                          ("timeZone", ZONE_RE)):
        assert f"self.matches('{pattern.pattern}')" in rules[name], name
        assert "\\" not in pattern.pattern, "a backslash would read differently in CEL"
    assert schedule["properties"]["windows"]["maxItems"] == MAX_WINDOWS
    assert schedule["properties"]["leadSeconds"]["maximum"] == MAX_LEAD_SECONDS
