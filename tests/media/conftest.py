"""Shared fixtures of the media tests, and the printed report of what they measured.

``media_report`` collects two kinds of rows: matrix cells (input protocol x output
form: pass/fail) and failure timings (how long a rendered FFmpeg took to exit, its
code and its one-line error). They are written as JSON lines into a directory shared
by the whole run and printed as tables at the end:

* by ``pytest_terminal_summary`` in the process that runs the session (plain pytest,
  or the xdist controller when this conftest is loaded there, e.g. ``pytest -n 2
  tests/media``);
* by each xdist worker at session finish when the controller did not load this file
  (``pytest -n 2 tests``: pytest loads conftests below the rootdir only when it
  collects, and an xdist controller does not collect). Workers' stderr reaches the
  terminal, so the tables still appear in ``make test`` output.

The tables are also written to ``summary.txt`` in the results directory.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamdist_dev import media

RESULTS_ENV = "STREAMDIST_MEDIA_RESULTS"
OWNER_ENV = "STREAMDIST_MEDIA_RESULTS_OWNER"
_lock = threading.Lock()


def pytest_configure(config: pytest.Config) -> None:
    worker = hasattr(config, "workerinput")
    if not worker:
        # The session's own process: it prints the tables; workers it spawns inherit this.
        os.environ[RESULTS_ENV] = tempfile.mkdtemp(prefix="streamdist-media-results-")
        os.environ[OWNER_ENV] = str(os.getpid())
    elif RESULTS_ENV not in os.environ:
        os.environ[RESULTS_ENV] = tempfile.mkdtemp(prefix="streamdist-media-results-")


def _results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or tempfile.mkdtemp(prefix="streamdist-media-results-"))


class MediaReport:
    """Rows for the end-of-run tables, appended to <results dir>/<pid>.jsonl."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"{os.getpid()}.jsonl"

    def _write(self, row: dict[str, Any]) -> None:
        with _lock, open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def cell(self, input_case: str, output_form: str, ok: bool, detail: str = "") -> None:
        self._write({"kind": "cell", "input": input_case, "output": output_form, "ok": ok, "detail": detail})

    def note(self, text: str) -> None:
        """A finding worth reading that is not a pass/fail or a time."""
        self._write({"kind": "note", "text": text})

    def timing(
        self,
        scenario: str,
        output_form: str,
        seconds: float | None,
        returncode: int | None,
        last_error: str,
        bound: float | None = None,
        stderr: str = "",
    ) -> None:
        self._write(
            {
                "kind": "timing",
                "scenario": scenario,
                "output": output_form,
                "seconds": seconds,
                "rc": returncode,
                "error": last_error,
                "stderr": stderr,
                "bound": bound,
            }
        )


@pytest.fixture
def media_report() -> MediaReport:
    return MediaReport(_results_dir())


@pytest.fixture
def group(tmp_path: Path) -> Iterator[media.ProcessGroup]:
    media.require_media_tools()
    with media.ProcessGroup(logdir=tmp_path / "logs") as g:
        yield g


# ------------------------------------------------------------------------- tables


def _rows(files: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for f in files:
        for line in f.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def render_tables(rows: list[dict[str, Any]]) -> str:
    out: list[str] = []
    cells = [r for r in rows if r["kind"] == "cell"]
    if cells:
        inputs = list(dict.fromkeys(r["input"] for r in cells))
        outputs = list(dict.fromkeys(r["output"] for r in cells))
        grid = {(r["input"], r["output"]): ("pass" if r["ok"] else "FAIL") for r in cells}
        w0 = max(len("input \\ output"), *(len(i) for i in inputs))
        widths = [max(len(o), 4) for o in outputs]
        out.append("media matrix (rendered MediaMTX config -> rendered FFmpeg argv -> real receiver, ffprobe)")
        out.append("  " + "input \\ output".ljust(w0) + "  " + "  ".join(o.ljust(w) for o, w in zip(outputs, widths)))
        for i in inputs:
            line = (
                "  " + i.ljust(w0) + "  " + "  ".join(grid.get((i, o), "-").ljust(w) for o, w in zip(outputs, widths))
            )
            out.append(line.rstrip())
        passed = sum(1 for r in cells if r["ok"])
        out.append(f"  {passed}/{len(cells)} cells pass")
        for r in cells:
            if not r["ok"]:
                out.append(f"  FAIL {r['input']} -> {r['output']}: {r['detail'][:300]}")
        out.append("")
    timings = [r for r in rows if r["kind"] == "timing"]
    if timings:
        out.append(
            "failure behaviour of the rendered FFmpeg (seconds from the event to FFmpeg's exit; "
            "last error = status.lastError as the operator reports it)"
        )
        w_s = max(len("scenario"), *(len(r["scenario"]) for r in timings))
        w_o = max(len("output"), *(len(r["output"]) for r in timings))
        out.append(
            f"  {'scenario'.ljust(w_s)}  {'output'.ljust(w_o)}  {'exit s':>7}  {'bound':>5}  {'rc':>4}  last error"
        )
        for r in timings:
            secs = "hung" if r["seconds"] is None else f"{r['seconds']:.2f}"
            bound = "" if r["bound"] is None else f"{r['bound']:g}"
            rc = "" if r["rc"] is None else str(r["rc"])
            said = r["error"]
            if r.get("stderr") and r["stderr"] != said:
                said += f"  [stderr: {r['stderr']}]"
            out.append(
                f"  {r['scenario'].ljust(w_s)}  {r['output'].ljust(w_o)}  {secs:>7}  {bound:>5}  {rc:>4}  {said}"
            )
        out.append("")
    notes = list(dict.fromkeys(r["text"] for r in rows if r["kind"] == "note"))
    if notes:
        out.append("notes")
        out += [f"  - {n}" for n in notes]
        out.append("")
    return "\n".join(out)


def _write_summary(directory: Path, text: str) -> Path:
    path = directory / "summary.txt"
    path.write_text(text)
    return path


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    directory = Path(os.environ.get(RESULTS_ENV, ""))
    if not directory.is_dir():
        return
    text = render_tables(_rows(sorted(directory.glob("*.jsonl"))))
    if not text:
        return
    path = _write_summary(directory, text)
    terminalreporter.section("streamdist media results")
    for line in text.splitlines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(also in {path})")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if not hasattr(config, "workerinput") or os.environ.get(OWNER_ENV):
        return  # the session's process prints them in the terminal summary
    directory = Path(os.environ.get(RESULTS_ENV, ""))
    mine = directory / f"{os.getpid()}.jsonl"
    if not mine.is_file():
        return
    text = render_tables(_rows([mine]))
    path = directory / f"summary-{os.getpid()}.txt"
    path.write_text(text)
    worker = config.workerinput.get("workerid", "worker")  # type: ignore[attr-defined]
    banner = f"\n===== streamdist media results ({worker}) =====\n"
    os.write(2, (banner + text + f"(also in {path})\n").encode())
