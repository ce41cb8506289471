"""Every input-parser fuzzer of ``tests/fuzz``, run much longer than the test suite does.

Prints, per fuzzer, how many inputs it tried, how many were accepted and how many distinct
error messages it saw; a fuzzer that finds a bug prints the smallest input hypothesis could
shrink it to, and the script exits non-zero.
Run: python benchmarks/fuzz_long.py [--examples N] [--seconds S] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

from tests.fuzz.targets import FUZZERS, Fuzzer  # noqa: E402

CHUNK = 250  # examples per hypothesis run; each run starts from a fresh random seed


class Stats:
    def __init__(self) -> None:
        self.tried = self.accepted = 0
        self.messages: set[str] = set()
        self.slowest = 0.0


def fuzz(fuzzer: Fuzzer, examples: int, seconds: float) -> tuple[Stats, str | None]:
    """Run until ``examples`` inputs or ``seconds`` have passed; the stats and any bug."""
    stats = Stats()

    @settings(max_examples=CHUNK, deadline=None, database=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(fuzzer.cases)
    def chunk(case: object) -> None:
        t0 = time.perf_counter()
        message = fuzzer.run(case)  # type: ignore[arg-type]
        stats.slowest = max(stats.slowest, time.perf_counter() - t0)
        stats.tried += 1
        if message is None:
            stats.accepted += 1
        else:
            stats.messages.add(message)

    end = time.monotonic() + seconds
    while stats.tried < examples and time.monotonic() < end:
        try:
            chunk()
        except Exception as exc:  # noqa: BLE001 - reported, then the next fuzzer runs
            cause = exc.__cause__ or exc
            frame = traceback.extract_tb(cause.__traceback__)[-1]
            notes = "\n  ".join(getattr(exc, "__notes__", []))
            return stats, (f"{type(exc).__name__}: {exc}\n  raised at {frame.filename}:"
                           f"{frame.lineno}\n  {notes}")
    return stats, None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=5000, help="inputs per fuzzer")
    ap.add_argument("--seconds", type=float, default=600.0, help="time budget per fuzzer")
    ap.add_argument("--only", nargs="*", choices=sorted(FUZZERS), help="these fuzzers only")
    args = ap.parse_args()
    failed = 0
    print(f"{'fuzzer':16} {'inputs':>8} {'accepted':>9} {'messages':>9} {'slowest':>8} "
          f"{'wall':>7}")
    for name in args.only or FUZZERS:
        t0 = time.monotonic()
        stats, bug = fuzz(FUZZERS[name], args.examples, args.seconds)
        print(f"{name:16} {stats.tried:8d} {stats.accepted:9d} {len(stats.messages):9d} "
              f"{stats.slowest:7.2f}s {time.monotonic() - t0:6.0f}s", flush=True)
        if bug:
            failed += 1
            print(f"  BUG in {name}: {bug}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
