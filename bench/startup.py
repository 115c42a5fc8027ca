"""Start-up time of `advisor recommend` beside `python -c "import torch"` and `python -c pass`, as ratios
measured in one run.

    python bench/startup.py [--runs 9]

The commands run interleaved (pass, advisor, library, torch; pass, advisor, ...), so a machine
that gets busier or quieter during the run slows them all alike; each ratio is the median of the
per-round ratios, beside the median wall time of each command. One warm-up round runs first and is
not counted: it fills the OS file cache and advisor's rulebook cache (~/.cache/advisor), as any
second run of advisor would find them. advisor's modules are byte-compiled first, as pip does when it
installs the package (with PYTHONDONTWRITEBYTECODE set, a source checkout would otherwise compile
them on every run).

Needs torch installed for the torch ratio (pip install 'llm-finetune-advisor[probe]'); without it,
prints advisor's time and its ratio to `python -c pass` alone.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ADVISOR = [sys.executable, "-m", "advisor", "recommend", "--model", "llama-8b", "--method", "grpo", "--no-detect"]
# The same job through the library alone (no click, no rich), printed as JSON: what advisor's own code
# costs, the floor a lighter command line could reach.
LIBRARY = [sys.executable, "-c", "from advisor import api; from advisor.render.data import to_json; "
           "from advisor.rulebook import load_rulebook; print(to_json(api.recommend(book=load_rulebook(), "
           "model='llama-8b', method='grpo', detect_gpu=False)))"]
TORCH = [sys.executable, "-c", "import torch"]
BARE = [sys.executable, "-c", "pass"]


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def paired(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Wall times of each command, one of each per round, the rounds interleaved."""
    for cmd in commands.values():
        wall(cmd)  # warm-up, not counted
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(wall(cmd))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    spec = importlib.util.find_spec("advisor")
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(Path(spec.origin).parent, quiet=1)
    commands = {"pass": BARE, "advisor": ADVISOR, "library": LIBRARY}
    has_torch = importlib.util.find_spec("torch") is not None
    if has_torch:
        commands["torch"] = TORCH
    times = paired(commands, args.runs)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"paired runs: {args.runs} rounds of {', '.join(commands)} (interleaved, after one warm-up round)")
    print(f"advisor = {shlex.join(['python', *ADVISOR[1:]])}")
    print(f"python -c pass            median {med['pass'] * 1000:7.0f} ms  (interpreter start)")
    print(f"advisor recommend         median {med['advisor'] * 1000:7.0f} ms")
    print(f"the library alone (JSON)  median {med['library'] * 1000:7.0f} ms  (the same job without click / rich)")
    if has_torch:
        print(f"python -c 'import torch'  median {med['torch'] * 1000:7.0f} ms")
    for name in ("advisor", "library"):
        label = "advisor recommend" if name == "advisor" else "the library alone"
        if has_torch:
            r = _ratio(times[name], times["torch"])
            print(f"ratio {label} / import torch   = {r:.3f}  (1/{1 / r:.1f}; target <= 1/8 = 0.125)")
        print(f"ratio {label} / python -c pass = {_ratio(times[name], times['pass']):.1f}")
    if not has_torch:
        print("torch is not installed: no torch ratio (pip install 'llm-finetune-advisor[probe]')")
    print("(ratios: the median of the per-round ratios)")


def _ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


if __name__ == "__main__":
    main()
