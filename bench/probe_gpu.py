"""A real QLoRA probe of a 1B+ model on a CUDA GPU, built from the registry config with random weights.

    python bench/probe_gpu.py [--steps 30] [--out bench/results] [--method grpo]

Runs exactly
    advisor probe --model llama-3.2-1b --method sft --peft qlora --random-init --gpu h100 --device cuda
(with --method grpo: TRL's GRPOTrainer, generation included, the recommendation's group size, temperature
and completion cap; bench/results/probe_gpu_grpo.md) and writes bench/results/probe_gpu.md: the command, the
device, the measured peak allocated /
reserved memory, tokens/s, step time, the micro-batch search if one ran, and the memory model's
prediction beside the measurement when advisor.memory exists. Needs a CUDA build of torch and
llm-finetune-advisor[probe]; exits 3 without a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = "llama-3.2-1b"
ONLINE_SEQ_LEN = 512  # not-knowledge: keeps a GRPO check's generation (to the cap: random weights) within minutes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--gpu", default="h100", help="registry GPU name for the recommendation's facts")
    parser.add_argument("--method", default="sft", help="sft (the LM step) or a method TRL trains (grpo, dpo)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="the probe's sequence length (default: the recommendation's; with grpo 512, since a "
                             "random-init model samples every completion to the cap and generation dominates the step)")
    args = parser.parse_args()
    seq_len = args.seq_len if args.seq_len is not None else (ONLINE_SEQ_LEN if args.method == "grpo" else None)
    try:
        import torch
    except ImportError:
        sys.stderr.write("bench/probe_gpu.py needs torch "
                         "(pip install 'llm-finetune-advisor[probe]' with a CUDA build of torch)\n")
        return 3
    if not torch.cuda.is_available():
        sys.stderr.write("bench/probe_gpu.py needs a CUDA GPU\n")
        return 3
    suffix = "" if args.method == "sft" else f"_{args.method}"
    probe_dir = args.out / f"probe-gpu{suffix.replace('_', '-')}"
    command = ["advisor", "probe", "--model", MODEL, "--method", args.method, "--peft", "qlora", "--random-init",
               "--gpu", args.gpu, "--device", "cuda", "--steps", str(args.steps), "--no-detect", "--no-live",
               "--out-dir", str(probe_dir), "--format", "json", *(["--seq-len", str(seq_len)] if seq_len else [])]
    proc = subprocess.run([sys.executable, "-m", "advisor", *command[1:]], capture_output=True, text=True, check=False,
                          cwd=REPO)
    if proc.returncode not in (0, 1) or not (probe_dir / "probe-report.json").is_file():
        sys.stderr.write(proc.stderr)
        return proc.returncode or 3
    report = json.loads((probe_dir / "probe-report.json").read_text())
    s, mem, plan = report["summary"], report["memory"], report["plan"]
    predicted = mem["predicted"]
    measured = s["peak_reserved_gb"]
    lines = [
        f"# advisor probe on a CUDA GPU: 1B+ model, {args.method} with QLoRA, random init from the registry config",
        "",
        f"Run {datetime.date.today().isoformat()} with `python bench/probe_gpu.py --steps {args.steps} --method "
        f"{args.method}" + (f" --seq-len {args.seq_len}" if args.seq_len is not None else "") + "`, which runs:",
        "",
        "```console",
        "$ " + " ".join(command),
        "```",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| device | {report['device']['name']} ({report['device']['precision']}), "
        f"{report['device']['memory_capacity_gb']:.1f} GiB |",
        f"| torch | {torch.__version__}, CUDA {torch.version.cuda} |",
        f"| model | {plan['model']['name']}, {plan['model']['params_b']}B parameters, "
        f"{report['model']['trainable_params']:,} trainable (LoRA r={plan['lora']['rank']}) |",
        f"| shape | micro-batch {report['ran_with']['micro_batch_size']} x accumulation "
        f"{report['ran_with']['gradient_accumulation_steps']}, sequence length {plan['seq_len']} |",
        f"| steps | {s['steps_run']} (verdict {report['verdict']}, loss {s['loss_first']} -> {s['loss_last']}) |",
        f"| peak memory allocated (torch.cuda.max_memory_allocated) | {s['peak_allocated_gb']:.2f} GiB |",
        f"| peak memory reserved (torch.cuda.max_memory_reserved) | {measured:.2f} GiB |",
        f"| tokens/s (median step) | {s['median_tokens_per_s']:.0f} |",
        f"| step time (median) | {s['median_step_time_s']:.3f} s |",
        f"| model load | {s['load_time_s']:.1f} s |",
        f"| trainer | {report['trainer']} |",
    ]
    method = report.get("method_telemetry") or {}
    for name in ("reward", "frac_reward_zero_std", "kl", "completions_mean_length", "completions_clipped_ratio",
                 "rewards_margins"):  # not-knowledge: the TRL series this table shows
        if name in method:
            lines.append(f"| {name} (first -> last) | {method[name]['first']} -> {method[name]['last']} |")
    if predicted is not None:
        lines.append(f"| memory model prediction (reserved) | {predicted['reserved_gb']:.2f} GiB "
                     f"(predicted / measured = {predicted['reserved_gb'] / measured:.2f}) |")
        lines.append(f"| memory model prediction (total, with CUDA context) | {predicted['total_gb']:.2f} GiB |")
    else:
        lines.append("| memory model prediction | not available (advisor.memory is not on this branch) |")
    if report["oom"] is not None:
        o = report["oom"]
        tried = ", ".join(f"{a['micro_batch']} {'fits' if a['fits'] else 'OOM'}" for a in o["attempts"])
        lines.append(f"| out of memory | micro-batch {o['failed_micro_batch']} at step {o['at_step']}; tried {tried}; "
                     f"largest fit {o['largest_fit']}, accumulation {o['accumulation']} |")
    lines += ["", "Signs: " + (", ".join(f"{x['code']} {x['severity']}" for x in report["signs"]) or "none"), ""]
    lines += ["Notes:", "", *[f"- {n}" for n in [*report["notes"], *report["model"]["notes"]]], ""]
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"probe_gpu{suffix}.md"
    target.write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
