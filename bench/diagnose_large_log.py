"""Wall time and peak memory of `advisor diagnose` on a large synthetic training log, measured in one run.

    python bench/diagnose_large_log.py [--rows 500000]

Writes a JSONL and a CSV log of ``--rows`` rows (step, loss, grad_norm, learning_rate, epoch, and an
eval_loss every 100th row, as a Trainer's logging callback writes them) to a temporary directory,
then runs `advisor diagnose LOG --format json` on each, and on a 100-row log of the same shape for the
floor: what the interpreter, advisor and its rulebook take before any row is read. Each command runs
in its own process, and its peak resident memory is that process's own (os.wait4's rusage), so one
command's peak does not hide another's. The figures: wall seconds, peak RSS, and the RSS above the
floor per row read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR_ROWS = 100
EVAL_EVERY = 100


def rows(n: int) -> list[dict[str, float]]:
    rng = random.Random(0)
    out = []
    for step in range(1, n + 1):
        # noise of 2% around a decaying loss: a healthy run, whose few loss spikes each sign may list
        row = {"step": step, "loss": (2.0 * math.exp(-step / (n / 5)) + 0.3) * (1 + 0.02 * (rng.random() - 0.5)),
               "grad_norm": 0.5 + 0.1 * rng.random(), "learning_rate": 2e-5 * (1 - step / (n + 1)),
               "epoch": round(3 * step / n, 6)}
        if step % EVAL_EVERY == 0:
            row["eval_loss"] = 2.1 * math.exp(-step / (n / 5))
        out.append(row)
    return out


def write_jsonl(path: Path, n: int) -> None:
    with path.open("w") as f:
        for row in rows(n):
            f.write(json.dumps(row) + "\n")


def write_csv(path: Path, n: int) -> None:
    columns = ("step", "loss", "grad_norm", "learning_rate", "epoch", "eval_loss")
    with path.open("w") as f:
        f.write(",".join(columns) + "\n")
        for row in rows(n):
            f.write(",".join("" if row.get(c) is None else repr(row[c]) for c in columns) + "\n")


def measure(log: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of `advisor diagnose LOG` in a process of its own."""
    cmd = [sys.executable, "-m", "advisor", "diagnose", str(log), "--format", "json", "--fail-on", "never"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {err.strip()}")
    # ru_maxrss: kilobytes on Linux, bytes on macOS
    return wall, usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small, big, table = Path(tmp, "small.jsonl"), Path(tmp, "log.jsonl"), Path(tmp, "log.csv")
        write_jsonl(small, FLOOR_ROWS)
        write_jsonl(big, args.rows)
        write_csv(table, args.rows)
        floor_wall, floor_rss = measure(small)
        print(f"floor ({FLOOR_ROWS} rows): {floor_wall:.2f} s, peak RSS {floor_rss / 2**20:.0f} MiB")
        for log in (big, table):
            wall, rss = measure(log)
            size = log.stat().st_size
            print(f"{log.suffix[1:]} ({args.rows} rows, {size / 2**20:.0f} MiB): {wall:.2f} s "
                  f"({wall / floor_wall:.1f}x the floor), peak RSS {rss / 2**20:.0f} MiB "
                  f"({(rss - floor_rss) / args.rows:.0f} bytes a row above the floor, "
                  f"{rss / size:.2f}x the file's size)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, page size {resource.getpagesize()}")


if __name__ == "__main__":
    main()
