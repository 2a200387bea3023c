"""Fuzz every loader with many generated inputs (default 10,000 per loader) and count outcomes.

Uses the strategies and checks of ``tests/test_data_fuzz.py``: each input must either
load (and prepare) correctly or raise a one-line ``NegrecError`` naming the file. Any
other exception, or a broken contract, is a crash; the first few are printed with the
input that caused them. Prints one line per loader (inputs, loaded, one-line errors,
crashes, seconds) and a markdown table to paste into ``benchmarks/RESULTS.md``.

    python benchmarks/fuzz_loaders.py                 # 10,000 inputs per loader
    python benchmarks/fuzz_loaders.py -n 500 lightgcn sasrec

Exit status 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_data_fuzz as fuzz
from hypothesis import Phase, given

from negrec.data.loaders import FORMATS


def run_format(fmt: str, n: int, folder: Path, show: int) -> tuple[collections.Counter, float]:
    """Fuzz one format with ``n`` inputs; returns (outcome counts, seconds)."""
    counts: collections.Counter = collections.Counter()
    settings = fuzz._settings(n)
    settings = type(settings)(settings, phases=[Phase.generate])  # no shrinking

    @settings
    @given(data=fuzz.fuzz_input(fmt))
    def run(data: bytes) -> None:
        try:
            counts[fuzz.check_input(fmt, data, folder)] += 1
        except Exception:  # a crash: count it, show the first few, keep fuzzing
            counts["crash"] += 1
            if counts["crash"] <= show:
                print(f"--- {fmt} crash on input {data!r}", file=sys.stderr)
                traceback.print_exc()

    start = time.perf_counter()
    run()
    return counts, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("formats", nargs="*", help="formats to fuzz (default: all)")
    parser.add_argument("-n", type=int, default=10_000, help="inputs per loader (default 10,000)")
    parser.add_argument("--show", type=int, default=3, help="crashes to print per loader")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # numpy/pandas runtime warnings on junk input
    formats = args.formats or sorted(FORMATS)
    rows = []
    total_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="negrec-fuzz-", dir=fuzz.scratch_root()) as tmp:
        for fmt in formats:
            counts, seconds = run_format(fmt, args.n, Path(tmp), args.show)
            n = sum(counts.values())
            rows.append((fmt, n, counts["ok"], counts["error"], counts["crash"], seconds))
            print(
                f"{fmt:<18} {n:>7,} inputs  {counts['ok']:>6,} loaded  "
                f"{counts['error']:>6,} one-line errors  {counts['crash']:>3} crashes  "
                f"{seconds:7.1f} s",
                flush=True,
            )
    total = time.perf_counter() - total_start
    print("\n| loader | inputs | loaded | one-line error | crash | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for fmt, n, ok, error, crash, seconds in rows:
        print(f"| {fmt} | {n:,} | {ok:,} | {error:,} | {crash} | {seconds:.1f} |")
    inputs = sum(r[1] for r in rows)
    crashes = sum(r[4] for r in rows)
    print(
        f"| **all** | {inputs:,} | {sum(r[2] for r in rows):,} | "
        f"{sum(r[3] for r in rows):,} | {crashes} | {total:.1f} |"
    )
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
