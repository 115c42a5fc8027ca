"""`advisor probe`: a short real training run of the method, judged by the signal rules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

from advisor.commands import options as o
from advisor.commands.params import Option
from advisor.errors import AdvisorError

RESULT = "advisor.probe.report.ProbeReport"
EPILOG = ("Examples:\n\n"
          "  advisor probe axolotl.yml\n\n"
          "  advisor probe --model llama-3.2-1b --method sft --peft qlora --random-init --gpu h100\n\n"
          "  advisor probe --model ./tiny/config.json --method sft --peft qlora --random-init --seq-len 64 --steps 30\n\n"
          "  advisor probe train.yaml --data my.jsonl --max-memory 20 --out-dir probe-out\n\n"
          "Exit codes: 0 pass (warnings printed) or not judged (too few steps to judge the loss signs),\n"
          "1 fail verdict, 2 bad input, 3 the probe could not run, 130 interrupted.")


def probe(
    config: o.ProbeConfig = None,
    model: o.ProbeModel = None,
    method: o.OptMethod = None,
    variant: o.OptVariant = None,
    peft: o.OptPeft = None,
    gpu: o.ProbeGpu = None,
    gpu_mem: o.GpuMem = None,
    random_init: o.RandomInit = False,
    data: o.Data = None,
    no_packing: o.NoPacking = False,
    steps: Annotated[Optional[int], Option(
        "--steps", help="Optimizer steps to run (default: through the full run's warmup and 30 steps beyond; 30 "
                        "when it has no warmup).")] = None,
    seq_len: o.SeqLen = None,
    micro_batch: o.MicroBatch = None,
    accumulation: o.Accumulation = None,
    lr: Annotated[Optional[float], Option("--lr", help="Override the learning rate.")] = None,
    seed: o.Seed = 0,
    reward: Annotated[Optional[str], Option(
        "--reward", help="GRPO: your reward function as module:function (TRL's signature: prompts, completions, "
                         "**columns -> list of floats); default: the built-in format / length / target-word "
                         "rewards on the built-in prompts.")] = None,
    max_memory: o.MaxMemory = None,
    device: o.Device = "auto",
    eval_every: Annotated[int, Option(
        "--eval-every", help="Also evaluate every N steps (start and end always).")] = 0,
    dataset_size: Annotated[Optional[str], Option(
        "--dataset-size", help="Training examples of the full run (projects its time from epochs).")] = None,
    out_dir: Annotated[Path, Option(
        "--out-dir", help="Directory for probe-report.json, probe-summary.md, probe-curves.png (and a TRL run's "
                          "trainer_state.json).")] = Path("probe-out"),
    save_adapter: Annotated[Optional[Path], Option(
        "--save-adapter", help="Save the trained adapter here (else no weights are written).")] = None,
    fail_on: Annotated[str, o.fail_on_option("error", "signs")] = "error",
    set_: o.Set = [],  # noqa: B006
    config_format: o.ConfigFormat = None,
    fmt: Annotated[str, o.format_option(RESULT)] = "text",
    output: o.Output = None,
    no_live: Annotated[bool, Option("--no-live", help="No live progress view.")] = False,
    no_detect: o.NoDetect = False,
    rules: o.Rules = [],  # noqa: B006
) -> int:
    """Train a short real probe run (QLoRA / LoRA / full) and judge it by the signal rules."""
    from advisor.exitcodes import check_fail_on
    from advisor.facts.task import parse_count
    from advisor.probe.plan import build_plan
    from advisor.render.emit import check_format, emit

    check_format(fmt, RESULT)
    check_fail_on(fail_on)
    from advisor.registries import check_flag

    check_flag("--eval-every", eval_every)
    from advisor.output import check_out_dir

    check_out_dir(out_dir, "--out-dir")
    if save_adapter is not None:
        check_out_dir(save_adapter, "--save-adapter")
    book = o.book(rules)
    inputs = o.plan_inputs(book, config=config, config_format=config_format, model=model, method=method, peft=peft,
                           variant=variant, gpu=gpu, gpu_mem=gpu_mem, no_detect=no_detect, random_init=random_init,
                           data=data, no_packing=no_packing, seq_len=seq_len, micro_batch=micro_batch,
                           accumulation=accumulation, max_memory=max_memory, device=device, set_=set_)
    plan = build_plan(
        book, **inputs, steps=steps, learning_rate=lr, seed=seed, reward=reward,
        dataset_size=parse_count(dataset_size, "--dataset-size") if dataset_size is not None else None,
    )
    if save_adapter is not None and plan.peft == "full":
        raise AdvisorError("--save-adapter: full fine-tuning trains no adapter", hint="use --peft lora or qlora")
    from advisor.probe.live import LiveView
    from advisor.probe.loop import run_probe
    from advisor.probe.report import make_report, short_probe_warning, write_outputs
    from advisor.probe.result import ProbeInterrupted

    warning = short_probe_warning(book, plan)
    if warning is not None:
        sys.stderr.write(f"advisor: warning: {warning}\n")
    with LiveView(plan.steps, enabled=not no_live and fmt == "text" and output is None) as view:
        try:
            result = run_probe(plan, on_step=view.on_step, on_eval=view.on_eval, eval_every=eval_every,
                               save_adapter=str(save_adapter) if save_adapter is not None else None)
        except ProbeInterrupted as stop:
            result = stop.result
    report = make_report(book, plan, result, fail_on)
    report.written = write_outputs(report, out_dir)
    emit(report, fmt, output)
    return int(report.exit_code)
