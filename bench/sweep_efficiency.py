"""How much of a grid's compute the sweep strategies need to find its learning rate.

    python bench/sweep_efficiency.py [--steps 60] [--out bench/results]

On the CPU: a small Llama-architecture transformer built from a config (random init, full
fine-tuning), the built-in real-text corpus, the same steps and seed for every full run.
Strategies: a 12-point log grid (the reference), `range-test` and `halving` (both through
`advisor sweep`'s own runner). Prints each strategy's chosen LR, the final eval loss a full run
at that LR reaches relative to the grid's best, and its optimizer steps relative to the grid's.
The range test's suggestion is checked with one extra full run (not counted in its steps: it is
the check, not the strategy). Writes bench/results/sweep_efficiency.md.

Targets (issue #6): halving within 1% of the grid's best eval loss with at most 1/4 of the grid's
steps; the range test with at most 1/10.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# A small transformer: big enough that the learning rate matters, small enough for a CPU.
CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 128,
          "intermediate_size": 344, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
          "head_dim": 32, "vocab_size": 2048, "max_position_embeddings": 512, "tie_word_embeddings": True,
          "rms_norm_eps": 1e-05}
GRID = (1e-4, 1e-1)  # the grid's span: four decades around where a from-scratch model this small trains


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps of one full run")
    ap.add_argument("--points", type=int, default=12, help="grid points")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()

    from advisor.rulebook.load import load_rulebook
    from advisor.sweep import analysis as an
    from advisor.sweep import runner

    book = load_rulebook()
    work = Path(tempfile.mkdtemp(prefix="advisor-sweep-bench-"))
    print(f"working in {work}", flush=True)
    config = work / "config.json"
    config.write_text(json.dumps(CONFIG))
    probe = {"config": None, "config_format": None, "model": str(config), "method": "sft", "peft": "full",
             "gpu": None, "gpu_mem": None, "detect_gpu": False, "random_init": True, "data": None, "packing": True,
             "seq_len": 128, "micro_batch": 8, "accumulation": 1, "max_memory_gb": None, "device": "cpu", "pins": {}}
    events = runner.Events()
    common = {"storage_url": None, "steps": args.steps, "eval_every": None, "seed": 0, "probe": probe,
              "events": events, "plots": False, "write_rules": None}
    results: dict[str, Any] = {}
    for strategy in ("grid", "range-test", "halving"):
        started = time.perf_counter()
        lrs = an.log_space(GRID[0], GRID[1], args.points) if strategy == "grid" else None
        outcome = runner.start(book, out=work / strategy, study_name=strategy, strategy=strategy, lrs=lrs,
                               suggest="minimum", **common)
        results[strategy] = {"outcome": outcome, "seconds": time.perf_counter() - started}
        print(f"{strategy}: {outcome.report.total_steps} steps in {results[strategy]['seconds']:.0f} s", flush=True)

    grid = results["grid"]["outcome"].report
    assert grid.best is not None and grid.best.eval_loss_end is not None
    grid_steps = grid.total_steps
    rows = [("grid", grid.best.lr, grid.best.eval_loss_end, grid_steps, "the reference")]
    halving = results["halving"]["outcome"].report
    if halving.best is not None and halving.best.eval_loss_end is not None:
        rows.append(("halving", halving.best.lr, halving.best.eval_loss_end, halving.total_steps,
                     f"{len(halving.rows)} candidates, {sum(r.run.status == 'pruned' for r in halving.rows)} pruned "
                     f"(range test included: {halving.range_test['steps'] if halving.range_test else 0} steps)"))
    rt = results["range-test"]["outcome"].report.range_test or {}
    if rt.get("suggestion"):
        prober = runner.Prober(book, results["range-test"]["outcome"].queue.spec, events)
        check = prober.run(float(rt["suggestion"]), steps=args.steps, eval_every=0)
        rows.append(("range-test", float(rt["suggestion"]), check.eval_loss_end or float("nan"),
                     results["range-test"]["outcome"].report.total_steps,
                     f"{rt['method']} suggestion; checked with one full run"))

    import torch

    lines = ["# Sweep strategies against a 12-point grid", "",
             f"Command: `python bench/sweep_efficiency.py --steps {args.steps}`  ",
             f"Machine: {platform.machine()} CPU, torch {torch.__version__}; model: Llama-architecture, hidden "
             f"{CONFIG['hidden_size']}, {CONFIG['num_hidden_layers']} layers, random init, full fine-tuning on the "
             f"built-in corpus, micro-batch 8 x 128 tokens, {args.steps} steps a full run, seed 0.", "",
             f"Grid: {args.points} LRs log-spaced over {GRID[0]:g} – {GRID[1]:g}.", "",
             "| strategy | chosen LR | final eval loss | vs grid best | optimizer steps | vs grid steps | note |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    best = grid.best.eval_loss_end
    for name, lr, loss, steps, note in rows:
        lines.append(f"| {name} | {lr:.3g} | {loss:.4f} | {loss / best:.4f} | {steps} | {steps / grid_steps:.3f} | {note} |")
    lines += ["", "Grid runs (LR, final eval loss, label):", ""]
    lines += [f"- {r.run.lr:.3g}: {r.run.eval_loss_end if r.run.eval_loss_end is not None else float('nan'):.4f} "
              f"({r.status})" for r in grid.rows]
    lines += ["", "Targets: halving within 1% of the grid's best eval loss using at most 1/4 of its steps; the range "
                  "test at most 1/10 of its steps."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep_efficiency.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
