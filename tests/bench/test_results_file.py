"""bench/RESULTS.md: a run rewrites the sections of the benchmarks it ran, keeps the
others, and keeps each hand-written note after the section it is about."""

from __future__ import annotations

from pathlib import Path

from bench import write_results
from bench.common import Opts, Result, Table

OLD = """# old header

<!-- bench:mediacost -->
### mediacost: old figures
<!-- /bench:mediacost -->

<!-- note:mediacost -->
**Closing note**: the floor is measured.
<!-- /note:mediacost -->

<!-- bench:latency -->
### latency: kept as it was
<!-- /bench:latency -->
"""


def test_a_run_keeps_notes_and_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(OLD)
    t = Table("new table", ["a"])
    t.add(1)
    write_results(path, [Result("mediacost", "media cost", tables=[t])], Opts(quick=True))
    text = path.read_text()
    assert "old figures" not in text and "new table" in text
    assert "### latency: kept as it was" in text
    new_section = text.index("<!-- /bench:mediacost -->")
    note = text.index("<!-- note:mediacost -->")
    assert new_section < note < text.index("<!-- bench:latency -->")
    assert text.count("**Closing note**: the floor is measured.") == 1
