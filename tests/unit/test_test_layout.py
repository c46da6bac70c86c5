"""The suites run in one pytest session (hack/run-tests.sh collects `tests` at once) in
pytest's default import mode, which imports each test module under its basename: two
modules of one name in different suites make the second one a collection error."""

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_basename_of_its_own() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        seen[path.name].append(str(path.relative_to(TESTS)))
    assert not {name: where for name, where in seen.items() if len(where) > 1}
