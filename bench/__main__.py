"""``python -m bench [--only NAME]... [--quick] [--write-results]``: run the benchmarks
and print one table per benchmark (see bench/__init__.py for the list)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import BENCHMARKS, run_benchmarks, write_results
from .common import Opts


def main(argv: list[str] | None = None) -> int:
    names = [m.NAME for m in BENCHMARKS]
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", action="append", choices=names, help="run only this benchmark (repeatable)")
    p.add_argument("--quick", action="store_true", help="smallest sizes and shortest windows (the smoke test's)")
    p.add_argument("--write-results", action="store_true", help="write bench/RESULTS.md from this run")
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/streamdist-bench"))
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    opts = Opts(quick=args.quick, workdir=args.workdir, verbose=not args.quiet)
    results = run_benchmarks(args.only or names, opts, stream=sys.stdout)
    if args.write_results:
        write_results(args.results, results, opts)
        print(f"results written to {args.results}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
