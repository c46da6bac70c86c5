"""When a scheduled output is on air: spec.schedule and the time in, a Position out. Pure.

A schedule is a list of windows, one-off `{start, end}` or recurring `{cron, duration,
timeZone}`. The output is on air inside any window, from `leadSeconds` before the
window's start (platforms want a few seconds of signal before "go live") to its exact
end. Windows that overlap or touch make one stretch on air: no stop and start between.

Recurring windows start at every instant whose wall clock in `timeZone` (UTC when
unset) matches the five-field cron expression, which is how Kubernetes CronJob's cron
library counts them: a time the clock skips when daylight saving starts does not occur
(no window that day), and a time the clock passes twice when it ends occurs twice.
`duration` is elapsed time: 2h stays 2h across a transition. cronsim matches the
fields on wall-clock times; zoneinfo maps those to instants.

Every rule is checked here (the CRD's CEL rules check the same ones at apply, where it
can): what slipped past is refused as InvalidSchedule, with a message that names the
field and the rule, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .models import Schedule, Window

MAX_WINDOWS = 16
MAX_LEAD_SECONDS = 3600
# The most a zone's clock goes back at once (2 h: Antarctica/Troll), with a margin: only
# within this far of such a transition can a later wall-clock time be an earlier instant.
FOLD = timedelta(hours=3)
# A stretch on air is followed through at most this many back-to-back windows, and this
# far ahead; beyond that no stop is reported (a later reconcile looks again).
MAX_CHAIN = 200
HORIZON = timedelta(days=366)

# The same patterns are in crds/streamoutputs.yaml's CEL rules (tests/unit/test_schedule.py
# keeps them equal), written without a backslash so that they read the same in both.
_FIELD = r"([*?]|[0-9]{1,2}|[A-Za-z]{3})(-([0-9]{1,2}|[A-Za-z]{3}))?(/[0-9]{1,2})?"
_LIST = rf"{_FIELD}(,{_FIELD})*"
CRON_RE = re.compile(rf"^ *{_LIST}( +{_LIST}){{4}} *$")
DURATION_RE = re.compile(r"^([0-9]{1,5}h)?([0-9]{1,5}m)?([0-9]{1,5}s)?$")
TIME_RE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
ZONE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")
CRON_RULE = (
    "must be five cron fields (minute hour day-of-month month day-of-week) of numbers, "
    "3-letter names, *, ?, ranges, steps and lists"
)


class ScheduleError(ValueError):
    """A rule of spec.schedule is broken: the message names the field and the rule."""


@dataclass(frozen=True)
class OneOff:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Recurring:
    cron: str  # as cronsim takes it: upper case, `?` as `*`
    duration: timedelta
    zone: ZoneInfo


@dataclass(frozen=True)
class Compiled:
    windows: tuple[OneOff | Recurring, ...]
    lead: timedelta


@dataclass(frozen=True)
class Position:
    """Where `now` is: on air (inside a stretch of windows) or off air, and what comes next."""

    inside: bool
    next_start: datetime | None = None  # off air: when the next window opens (lead applied); None: none ahead
    next_stop: datetime | None = None  # on air: when the stretch ends; None: not within sight

    @property
    def wake(self) -> datetime | None:
        """The next boundary, when the output must be looked at again."""
        return self.next_stop if self.inside else self.next_start


Interval = tuple[datetime, datetime]  # [on air from, off air at)


# --- rules ---------------------------------------------------------------------------


def compile_schedule(schedule: Schedule) -> Compiled:
    """The schedule's windows, checked; ScheduleError names the first broken rule."""
    if not schedule.windows:
        raise ScheduleError("spec.schedule.windows: must list at least one window")
    if len(schedule.windows) > MAX_WINDOWS:
        raise ScheduleError(f"spec.schedule.windows: at most {MAX_WINDOWS} windows")
    if not 0 <= schedule.lead_seconds <= MAX_LEAD_SECONDS:
        raise ScheduleError(f"spec.schedule.leadSeconds: must be between 0 and {MAX_LEAD_SECONDS}")
    windows = tuple(_window(f"spec.schedule.windows[{i}]", w) for i, w in enumerate(schedule.windows))
    return Compiled(windows, timedelta(seconds=schedule.lead_seconds))


def _window(where: str, w: Window) -> OneOff | Recurring:
    one_off, recurring = (w.start, w.end) != (None, None), (w.cron, w.duration) != (None, None)
    if one_off == recurring or (one_off and None in (w.start, w.end)) or (recurring and None in (w.cron, w.duration)):
        raise ScheduleError(
            f"{where}: a window is either one-off (start and end) or recurring (cron and duration, optional timeZone)"
        )
    if one_off:
        if w.time_zone is not None:
            raise ScheduleError(f"{where}.timeZone: only recurring windows take a time zone")
        start, end = _time(f"{where}.start", w.start), _time(f"{where}.end", w.end)
        if end <= start:
            raise ScheduleError(f"{where}.end: must be after start")
        return OneOff(start, end)
    return Recurring(_cron(f"{where}.cron", w.cron or ""), _duration(f"{where}.duration", w.duration or ""),
                     _zone(f"{where}.timeZone", w.time_zone))  # fmt: skip


def _time(where: str, value: str | None) -> datetime:
    if value is None or not TIME_RE.match(value):
        raise ScheduleError(f"{where}: must be an RFC 3339 time with an offset (2026-05-01T19:00:00+02:00)")
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        raise ScheduleError(f"{where}: not a valid date and time") from None


def _cron(where: str, value: str) -> str:
    if not CRON_RE.match(value):
        raise ScheduleError(f"{where}: {CRON_RULE}")
    expr = " ".join(value.upper().replace("?", "*").split())
    try:
        CronSim(expr, datetime(2000, 1, 1))
    except CronSimError as exc:  # "Bad minute", "Bad day-of-month": the field, never the value
        raise ScheduleError(f"{where}: {str(exc).lower()} (out of range, or a date that never occurs)") from None
    return expr


def _duration(where: str, value: str) -> timedelta:
    match = DURATION_RE.match(value)
    hours, minutes, seconds = (int((g or "0").rstrip("hms")) for g in match.groups()) if match else (0, 0, 0)
    if not match or not value or hours * 3600 + minutes * 60 + seconds == 0:
        raise ScheduleError(f"{where}: must be a positive duration in hours, minutes and seconds (2h30m)")
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _zone(where: str, value: str | None) -> ZoneInfo:
    if value is None:
        return ZoneInfo("UTC")
    if not ZONE_RE.match(value):
        raise ScheduleError(f"{where}: must be an IANA time zone name (Europe/Paris)")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{where}: not a time zone of the operator's time zone database") from None


# --- cron on the wall clock -------------------------------------------------------------


def _instants(naive: datetime, zone: ZoneInfo) -> list[datetime]:
    """The instants at which the wall clock in `zone` reads `naive`: none in a gap
    (spring forward), two in a fold (fall back)."""
    out: list[datetime] = []
    for fold in (0, 1):
        instant = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == naive and instant not in out:
            out.append(instant)
    return out


def _margin(zone: ZoneInfo, at: datetime) -> timedelta:
    """How far wall-clock order may differ from time order near `at`: FOLD where the
    offset changes within FOLD of it, else nothing (every wall-clock time maps to one
    instant, in order)."""
    before, after = (at - FOLD).astimezone(zone).utcoffset(), (at + FOLD).astimezone(zone).utcoffset()
    return FOLD if before != after else timedelta(0)


def _wall(zone: ZoneInfo, at: datetime) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def next_start(w: Recurring, after: datetime) -> datetime | None:
    """The first instant after `after` whose wall clock matches the cron expression."""
    return _search(w, after, reverse=False)


def last_start(w: Recurring, at: datetime) -> datetime | None:
    """The last instant at or before `at` whose wall clock matches the cron expression."""
    return _search(w, at + timedelta(microseconds=1), reverse=True)


def _search(w: Recurring, at: datetime, reverse: bool) -> datetime | None:
    """Nearest match strictly after (before, reversed) `at`: wall-clock candidates from
    cronsim, in order, until none can be nearer than the best one found."""
    sign = -1 if reverse else 1
    best: datetime | None = None
    limit: datetime | None = None  # the wall-clock time past which no candidate can beat `best`
    for naive in _candidates(w.cron, _wall(w.zone, at) - sign * _margin(w.zone, at), reverse):
        if limit is not None and sign * (naive - limit) > timedelta(0):
            break
        for instant in _instants(naive, w.zone):
            if sign * (instant - at) > timedelta(0) and (best is None or sign * (best - instant) > timedelta(0)):
                best = instant
                limit = _wall(w.zone, best) + sign * _margin(w.zone, best)
    return best


def _candidates(cron: str, begin: datetime, reverse: bool) -> Iterator[datetime]:
    """Matching wall-clock times from `begin`'s minute on (back, reversed), nearest first.

    cronsim yields matches strictly after (before) its start, and gives up after 50 years
    without one.
    """
    minute = begin.replace(second=0, microsecond=0)
    yield from CronSim(cron, minute + timedelta(minutes=1 if reverse else -1), reverse=reverse)


# --- on air or off air -------------------------------------------------------------------


def position(schedule: Compiled, now: datetime) -> Position:
    """On air when `now` is in a window (lead included); then until when, else from when."""
    ends = [iv[1] for w in schedule.windows if (iv := _latest(w, schedule.lead, now)) and iv[1] > now]
    if ends:
        return Position(True, next_stop=_stretch_end(schedule, max(ends), now))
    starts = [iv[0] for w in schedule.windows if (iv := _following(w, schedule.lead, now))]
    return Position(False, next_start=min(starts, default=None))


def _stretch_end(schedule: Compiled, end: datetime, now: datetime) -> datetime | None:
    """Follow the stretch on air through every window that opens at or before its end."""
    for _ in range(MAX_CHAIN):
        if end > now + HORIZON:
            return None
        later = [iv[1] for w in schedule.windows if (iv := _latest(w, schedule.lead, end)) and iv[1] > end]
        if not later:
            return end
        end = max(later)
    return None


def _latest(w: OneOff | Recurring, lead: timedelta, at: datetime) -> Interval | None:
    """The window's occurrence that went on air last, at or before `at`.

    All occurrences of a window last as long, so no earlier one ends later.
    """
    if isinstance(w, OneOff):
        return (w.start - lead, w.end) if w.start - lead <= at else None
    start = last_start(w, at + lead)
    return (start - lead, start + w.duration) if start else None


def _following(w: OneOff | Recurring, lead: timedelta, at: datetime) -> Interval | None:
    """The window's first occurrence that goes on air after `at`."""
    if isinstance(w, OneOff):
        return (w.start - lead, w.end) if w.start - lead > at else None
    start = next_start(w, at + lead)
    return (start - lead, start + w.duration) if start else None


@dataclass(frozen=True)
class Placed:
    """A position and what it was worked out from: it holds until its next boundary."""

    schedule: Schedule
    at: datetime
    position: Position

    def holds(self, schedule: Schedule, now: datetime) -> bool:
        if self.schedule != schedule or now < self.at:
            return False
        wake = self.position.wake
        if wake is None:  # off air with nothing ahead stays so; on air with no stop in sight is looked at again
            return not self.position.inside
        return now < wake


def locate(schedule: Schedule, now: datetime, placed: Placed | None = None) -> Placed:
    """Where `now` is in `schedule`, reusing `placed` while it holds (a reconcile every
    few seconds would otherwise walk the cron expression each time). ScheduleError when a
    rule is broken."""
    if placed is not None and placed.holds(schedule, now):
        return placed
    return Placed(schedule, now, position(compile_schedule(schedule), now))
