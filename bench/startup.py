"""Start-up time of `advisor recommend` beside `python -c "import torch"`, as a ratio measured in one run.

    python bench/startup.py [--runs 7]

Prints the median wall time of each and advisor's time as a fraction of torch's import.
Needs torch installed for the comparison (pip install 'llm-finetune-advisor[probe]'); without it, prints
advisor's time alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time

ADVISOR = [sys.executable, "-m", "advisor", "recommend", "--model", "llama-8b", "--method", "grpo", "--no-detect"]
TORCH = [sys.executable, "-c", "import torch"]
BARE = [sys.executable, "-c", "pass"]


def median_wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    bare = median_wall(BARE, args.runs)
    advisor = median_wall(ADVISOR, args.runs)
    print(f"python -c pass            median {bare * 1000:7.0f} ms  (interpreter start)")
    print(f"advisor recommend         median {advisor * 1000:7.0f} ms")
    if importlib.util.find_spec("torch") is None:
        print("torch is not installed: no ratio (pip install 'llm-finetune-advisor[probe]')")
        return
    torch = median_wall(TORCH, args.runs)
    print(f"python -c 'import torch'  median {torch * 1000:7.0f} ms")
    print(f"ratio advisor / import torch = {advisor / torch:.2f}")


if __name__ == "__main__":
    main()
