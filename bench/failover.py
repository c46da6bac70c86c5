"""7. Failover: how long a receiver goes without source frames when the primary source
of an input with a backup stops, and when it returns.

On the media harness: the rendered router of a StreamInput with a backup (MediaMTX and
its rendered switch sidecar, images/ffmpeg/streamdist_switch.py), one rendered output
sending MPEG-TS over UDP to a recorder. The primary encoder (640x360) and the backup
encoder (480x270, sized differently so the recording tells them apart) run the test
pattern at 25 fps with a fixed GOP. Each cycle: the primary runs a while, its encoder is
killed (SIGKILL: a cable pull, at a random point of its GOP), the backup is on air a
while, a new primary encoder starts. The recording is decoded afterwards
(FFmpeg's showinfo): a frame is the primary's or the backup's by its size, the slate
by being one flat colour (or MediaMTX's built-in 1920x1080 slate). At each change of
source the gap is the timestamp distance from the last frame of the one to the first
frame of the other, slate frames counting as missing: what a viewer of the receiver
sees without source pictures.
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamdist import switch_state
from streamdist_dev import media, rendered

from . import mediautil
from .common import CLK_TCK, REPO_ROOT, Opts, Result, Table, say, summary, verdict

NAME = "failover"
TITLE = "failover: receiver's gap without source frames at each switch (primary <-> backup)"
PRIMARY_SIZE, BACKUP_SIZE, BUILTIN_SLATE = (640, 360), (480, 270), (1920, 1080)
FPS = 25
TARGET_MS = 500.0
# A frame whose luma deviates less than this is one flat colour (with some text at
# most): the slate. The test pattern's is ~56.
FLAT_DEVIATION = 20.0


@dataclass(frozen=True)
class Frame:
    pts: float  # seconds (MPEG-TS: 90 kHz ticks, exact)
    size: tuple[int, int]
    deviation: float  # standard deviation of the luma plane

    @property
    def kind(self) -> str:
        """primary, backup, slate or other."""
        if self.size == BUILTIN_SLATE or self.deviation < FLAT_DEVIATION:
            return "slate"
        return {PRIMARY_SIZE: "primary", BACKUP_SIZE: "backup"}.get(self.size, "other")


@dataclass
class Switch:
    to: str  # backup | primary
    gap_s: float
    slate_frames: int
    slate_sizes: tuple[tuple[int, int], ...]
    source_size: tuple[int, int]  # the size of the source before the switch

    @property
    def slate_kept_size(self) -> bool:
        return all(s == self.source_size for s in self.slate_sizes)


@dataclass
class Run:
    gop: float
    primary: str
    cycles: int
    switch: str
    switches: list[Switch] = field(default_factory=list)
    backwards: int = 0
    switch_cpu_s: float = 0.0
    seconds: float = 0.0
    frames: int = 0
    measured: dict[str, list[int]] = field(default_factory=dict)  # the switch's own gaps, ms per target
    slate_cpu: list[float] = field(default_factory=list)  # CPU s of each slate encode

    def gaps(self, to: str) -> list[float]:
        return [s.gap_s for s in self.switches if s.to == to]


SHOWINFO = re.compile(r" pts:\s*(-?\d+) .*? s:(\d+)x(\d+) .*?stdev:\[\s*([0-9.]+)")


def frames_of(recording: Path) -> list[Frame]:
    """Every decoded video frame of ``recording``: its time, size and luma deviation
    (FFmpeg's showinfo filter, which follows the size changes of the stream)."""
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info", "-i", str(recording), "-map", "0:v:0",
         "-vf", "showinfo", "-fps_mode", "passthrough", "-f", "null", "-"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    frames = []
    for line in out.stderr.splitlines():
        m = SHOWINFO.search(line)
        if m and "Parsed_showinfo" in line:
            frames.append(Frame(int(m[1]) / 90000, (int(m[2]), int(m[3])), float(m[4])))
    return frames


def switches_of(frames: list[Frame]) -> list[Switch]:
    """Each change between primary and backup frames, with the slate frames between."""
    out: list[Switch] = []
    last: Frame | None = None
    between: list[Frame] = []
    for f in frames:
        kind = f.kind
        if kind not in ("primary", "backup"):
            if last is not None:
                between.append(f)
            continue
        if last is not None and last.kind != kind:
            sizes = tuple(sorted({b.size for b in between}))
            out.append(Switch(kind, round(f.pts - last.pts, 3), len(between), sizes, last.size))
        last, between = f, []
    return out


def wait_on_air(on_air: Callable[[], str | None], role: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while on_air() != role and time.monotonic() < deadline:
        time.sleep(0.1)


@dataclass(frozen=True)
class Candidate:
    """A switch to measure: its name, its argv for a prepared router (None: as rendered)
    and how to tell what it has on air."""

    name: str
    argv: Callable[[rendered.RenderedInput], list[str]] | None
    on_air: Callable[[rendered.RenderedInput], str | None]


SPLICE = Candidate("splice", None, lambda router: router.on_air())
RELAY_NAME = "relay"
BASELINE_REV = "982e9b0"


def relay_switch(work: Path) -> Candidate | None:
    """The switch before this one, from git (None where the history is not at hand)."""
    path = work / "relay_switch.py"
    got = subprocess.run(["git", "-C", str(REPO_ROOT), "show", f"{BASELINE_REV}:images/ffmpeg/streamdist_switch.py"],
                         capture_output=True, timeout=60)  # fmt: skip
    if got.returncode != 0:
        return None
    path.write_bytes(got.stdout)

    def argv(router: rendered.RenderedInput) -> list[str]:
        return [sys.executable, str(path), "--path", router.name, "--api", f"http://{media.LOOPBACK}:{router.api_port}",
                "--rtsp", f"rtsp://{media.LOOPBACK}:{router.rtsp_port}"]  # fmt: skip

    return Candidate(RELAY_NAME, argv, relay_on_air)


def relay_on_air(router: rendered.RenderedInput) -> str | None:
    """The relay switch tags its RTSP publish ``?streamdist=<role>``: the publishing
    session's query says who is on air (what the operator read before)."""
    assert router.mediamtx is not None
    api = router.mediamtx.api()
    sample = api.path(router.name)
    if sample is None or not sample.online:
        return "slate"
    session = next((x for x in api.sessions("rtspSession") if x.id == sample.source_id), None)
    role = urllib.parse.parse_qs(session.query).get("streamdist") if session else None
    return role[0] if role else None


def state_gaps(router: rendered.RenderedInput) -> dict[str, list[int]]:
    """The gaps the switch itself measured, per target (what the Events and the metric say)."""
    try:
        state = router.switch_state()
    except switch_state.SwitchStateError:
        return {}
    out: dict[str, list[int]] = {}
    for s in state.switches:
        if s.source and s.gap_ms is not None:
            out.setdefault(s.to, []).append(s.gap_ms)
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = sum(int(v) for v in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return own + sum(tree_cpu(int(k)) for k in kids)


def run(opts: Opts) -> Result:
    res = Result(NAME, TITLE)
    configs = [(1.0, "udp")] if opts.quick else [(g, p) for g in (1.0, 2.0) for p in ("udp", "srt")]
    cycles = 2 if opts.quick else 20
    relay = None if opts.quick else relay_switch(opts.dir(NAME))
    runs = []
    for gop, primary in configs:
        for switch in (SPLICE, *([relay] if relay else [])):
            say(opts, f"{NAME}: {switch.name} switch, GOP {gop:g} s, {primary} primary, {cycles} cycles")
            runs.append(measure(opts, gop, primary, cycles, random.Random(f"{gop}-{primary}"), switch))
    t = Table(
        f"receiver's gap without source frames (ms), {cycles} switches each way, 640x360@{FPS} primary, "
        f"480x270 backup",
        ["switch", "GOP s", "primary", "switches", "to backup p50", "p95", "max", "to primary p50", "p95", "max",
         "switch's own p95 to backup / primary", "slate kept resolution", "ts backwards", "switch CPU s/min",
         "slate encode CPU s", "p95 target <500 ms"],
    )  # fmt: skip
    figs: dict[str, Any] = {}
    for r in runs:
        down, up = summary(r.gaps("backup")), summary(r.gaps("primary"))
        kept = all(s.slate_kept_size for s in r.switches)
        worst = max(down[1], up[1]) * 1000
        own = "/".join(f"{summary(r.measured[k])[1]:.0f}" for k in ("backup", "primary") if k in r.measured) or None
        t.add(r.switch, f"{r.gop:g}", r.primary, f"{len(r.gaps('backup'))}+{len(r.gaps('primary'))}",
              *(x * 1000 for x in down), *(x * 1000 for x in up), own, kept, r.backwards,
              r.switch_cpu_s / r.seconds * 60 if r.seconds else None,
              "/".join(f"{c:.2f}" for c in r.slate_cpu) or None, verdict(worst, TARGET_MS))  # fmt: skip
        figs[f"{r.switch}-gop{r.gop:g}-{r.primary}"] = {
            "to_backup": down, "to_primary": up, "switches": len(r.switches), "cycles": r.cycles,
            "slate_kept_size": kept, "backwards": r.backwards, "frames": r.frames, "measured": r.measured,
            "switch_cpu_s": r.switch_cpu_s, "seconds": r.seconds, "slate_cpu": r.slate_cpu,
        }  # fmt: skip
    t.notes.append(
        "gap: timestamp distance at the receiver from the last frame of one source to the first of the other "
        "(slate frames count as missing); the primary encoder is SIGKILLed at a random point of its GOP and a "
        "new one started later; backup: SRT for a UDP primary, UDP for an SRT primary"
    )
    t.notes.append(
        f"switch: {SPLICE.name} = this one (images/ffmpeg/streamdist_switch.py: readers keep each ingest's latest GOP, "
        f"one publisher, the slate in the source's format); {RELAY_NAME} = the one before (commit {BASELINE_REV}: "
        "an FFmpeg relay started per switch, MediaMTX's built-in slate between relays), run on the same router "
        "config in the same run, for the ratio"
    )
    t.notes.append(
        "slate kept resolution: every slate frame between two sources had the size of the source before it; "
        "switch CPU: the switch sidecar with every process it started (readers, publisher, probes, slate "
        "encodes); slate encode: CPU seconds of each one-second slate encode (one per source format); switch's "
        "own: the gaps it measured itself (status.lastSwitch, the Events, the metric)"
    )
    res.tables.append(t)
    res.figures = figs
    return res


def measure(opts: Opts, gop: float, primary: str, cycles: int, rng: random.Random, switch: Candidate) -> Run:
    work = opts.dir(f"{NAME}-{switch.name}-gop{gop:g}-{primary}")
    backup = "srt" if primary == "udp" else "udp"
    result = Run(gop, primary, cycles, switch.name)
    recording = work / "rx.ts"
    with media.ProcessGroup(logdir=work / "logs") as g:
        backup_port = media.free_udp_port()
        inp = rendered.make_input("cam", primary, backup={"protocol": backup, "port": backup_port})
        router = rendered.prepare_input(inp, work / "router", group=g, settings=mediautil.ROUTER_SETTINGS)
        if switch.argv is not None:
            router.switch_argv = switch.argv(router)
        router.start()
        assert router.switch is not None

        def on_air() -> str | None:
            return switch.on_air(router)

        port = media.free_udp_port()
        media.start_udp_recorder(port, recording, group=g)
        out = rendered.prepare_output(
            rendered.make_output("rx", "cam", url=f"udp://{media.LOOPBACK}:{port}?pkt_size=1316"),
            router_rtsp_port=router.rtsp_port, group=g,
        )  # fmt: skip

        def encoder(role: str, n: int) -> media.ManagedProcess:
            size = PRIMARY_SIZE if role == "primary" else BACKUP_SIZE
            proto = primary if role == "primary" else backup
            return media.start_source(proto, router.ingest_url(role=role), group=g, name=f"{role}-{n}",
                                      size="x".join(map(str, size)), fps=FPS, gop_seconds=gop)  # fmt: skip

        hold = max(4.0, 2 * gop)
        current = encoder("primary", 0)
        encoder("backup", 0)
        wait_on_air(on_air, "primary", 30)
        time.sleep(3)
        out.start()
        time.sleep(hold)
        cpu0, t0 = tree_cpu(router.switch.pid), time.monotonic()
        for n in range(cycles):
            time.sleep(rng.uniform(0, gop))
            current.signal(signal.SIGKILL)  # the primary's cable is pulled
            current.wait(5)
            wait_on_air(on_air, "backup", 10)
            time.sleep(hold / 2 + rng.uniform(0, gop))
            current = encoder("primary", n + 1)
            # an SRT listener refuses a new publisher while the killed one's connection
            # lingers (MediaMTX never kicks a live publisher): the encoder retries, as
            # real ones do
            deadline = time.monotonic() + 30
            while on_air() != "primary" and time.monotonic() < deadline:
                if not current.alive():
                    current = encoder("primary", n + 1)
                time.sleep(0.2)
            time.sleep(hold / 2)
        result.switch_cpu_s = tree_cpu(router.switch.pid) - cpu0
        result.seconds = time.monotonic() - t0
        result.measured = state_gaps(router)
        log = router.switch.log_text()
        result.slate_cpu = [float(x) for x in re.findall(r"event=slate-ready .* cpu_s=([\d.]+)", log)]
        out.stop()
        time.sleep(1)
    frames = frames_of(recording)
    result.frames = len(frames)
    result.backwards = sum(1 for a, b in itertools.pairwise(frames) if b.pts <= a.pts)
    result.switches = switches_of(frames)
    return result
