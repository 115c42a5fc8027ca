"""Start-up time of `advisor recommend` beside `python -c "import torch"` and `python -c pass`, as ratios
measured in one run.

    python bench/startup.py [--runs 9]

The three commands run interleaved (pass, advisor, torch; pass, advisor, torch; ...), so a machine
that gets busier or quieter during the run slows all three alike; each ratio is the median of the
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
    commands = {"pass": BARE, "advisor": ADVISOR}
    has_torch = importlib.util.find_spec("torch") is not None
    if has_torch:
        commands["torch"] = TORCH
    times = paired(commands, args.runs)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"paired runs: {args.runs} rounds of {', '.join(commands)} (interleaved, after one warm-up round)")
    print(f"advisor = {shlex.join(['python', *ADVISOR[1:]])}")
    print(f"python -c pass            median {med['pass'] * 1000:7.0f} ms  (interpreter start)")
    print(f"advisor recommend         median {med['advisor'] * 1000:7.0f} ms")
    if has_torch:
        print(f"python -c 'import torch'  median {med['torch'] * 1000:7.0f} ms")
        ratio = statistics.median(a / t for a, t in zip(times["advisor"], times["torch"], strict=True))
        print(f"ratio advisor / import torch = {ratio:.3f}  (1/{1 / ratio:.1f}; median of per-round ratios; "
              f"target <= 1/8 = 0.125)")
    else:
        print("torch is not installed: no torch ratio (pip install 'llm-finetune-advisor[probe]')")
    ratio_bare = statistics.median(a / b for a, b in zip(times["advisor"], times["pass"], strict=True))
    print(f"ratio advisor / python -c pass = {ratio_bare:.1f}  (median of per-round ratios)")


if __name__ == "__main__":
    main()
