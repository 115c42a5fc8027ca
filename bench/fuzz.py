"""Fuzz every reader with many generated inputs and print internal errors and hangs per entry point.

    python bench/fuzz.py [--examples 10000] [--only NAME] [--write]

The strategies and the rule a call must keep are tests/fuzzing.py's (the ones tests/test_fuzz.py
runs with a few examples in CI): a call returns, or raises an AdvisorError naming its input,
within TIME_LIMIT_S. ``--write`` records the table in bench/results/fuzz.md.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.fuzzing import ENTRY_POINTS, TIME_LIMIT_S, classify  # noqa: E402

KINDS = ("ok", "error", "unnamed", "internal", "hang")


def run(name: str, examples: int, scratch: Path) -> tuple[collections.Counter[str], list[str], float]:
    strategy, entry = ENTRY_POINTS[name]
    counts: collections.Counter[str] = collections.Counter()
    samples: list[str] = []
    folder = scratch / name.replace(":", "-").replace(" ", "-")
    folder.mkdir()

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        call, names = entry(data.draw(strategy), folder)
        outcome = classify(call, names)
        counts[outcome.kind] += 1
        if outcome.kind not in ("ok", "error") and len(samples) < 5:
            samples.append(f"{outcome.kind}: {outcome.detail}")

    start = time.monotonic()
    fuzz()
    return counts, samples, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--only", action="append", choices=sorted(ENTRY_POINTS))
    parser.add_argument("--write", action="store_true", help="write bench/results/fuzz.md")
    args = parser.parse_args()
    names = args.only or sorted(ENTRY_POINTS)
    rows = ["| entry point | inputs | ok | one-line error | unnamed error | internal error | hang | seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="advisor-fuzz-") as tmp:
        for name in names:
            counts, samples, seconds = run(name, args.examples, Path(tmp))
            total = sum(counts.values())
            rows.append(f"| {name} | {total} | " + " | ".join(str(counts[k]) for k in KINDS) + f" | {seconds:.0f} |")
            print(rows[-1], flush=True)
            notes.extend(f"- {name}: {s}" for s in samples)
    bad = sum(int(r.split("|")[6]) + int(r.split("|")[7]) for r in rows[2:])
    report = "\n".join(rows) + "\n"
    print(f"\ninternal errors + hangs: {bad} (time limit {TIME_LIMIT_S:g} s a call)")
    for note in notes:
        print(note)
    if args.write:
        command = "python bench/fuzz.py --examples " + str(args.examples) + " --write"
        text = (f"# Fuzzing every reader (issue 16)\n\n`{command}` (Hypothesis, generate phase only; "
                f"tests/fuzzing.py's strategies; a call must return or raise a one-line AdvisorError naming its "
                f"input within {TIME_LIMIT_S:g} s):\n\n{report}\ninternal errors + hangs: {bad}\n"
                + ("".join(f"\n{n}" for n in notes) + "\n" if notes else ""))
        (ROOT / "bench" / "results" / "fuzz.md").write_text(text)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
