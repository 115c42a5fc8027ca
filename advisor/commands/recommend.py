"""`advisor recommend`: a fine-tuning config from the rulebook, every value with its rule and source."""

from __future__ import annotations

from typing import Annotated, Optional

from advisor.commands import options as o
from advisor.commands.params import Option

RESULT = "advisor.recommendation.Recommendation"
EPILOG = ("Examples:\n\n"
          "  advisor recommend --model llama-8b --method grpo\n\n"
          "  advisor recommend --model qwen2.5-7b --method sft --peft qlora --gpu rtx-4090 --dataset-size 20k\n\n"
          "  advisor recommend --model ./my-model/config.json --method dpo --situation safety --format yaml\n\n"
          "  advisor recommend --model llama-8b --method raft --cycles 8 --dataset-size 500 --explain")


def recommend(
    model: o.Model,
    method: o.Method,
    peft: o.FitPeft = None,
    gpu: o.Gpu = None,
    gpu_mem: o.GpuMem = None,
    gpus: o.Gpus = None,
    sharding: o.Sharding = None,
    offload: o.Offload = [],  # noqa: B006
    launch_config: o.LaunchConfig = None,
    dataset_size: o.DatasetSize = None,
    seq_len: o.SeqLen = None,
    cycles: Annotated[Optional[int], Option("--cycles", help="RAFT cycles: adds the per-cycle LR schedule.")] = None,
    use_case: Annotated[str, Option("--use-case", help="short-qa | chat | long-documents | code")] = "chat",
    situation: Annotated[Optional[str], Option(
        "--situation",
        help="DPO: new-domain | safety | strong-baseline | weak-baseline (default: beta's standard row).")] = None,
    sft_lr: Annotated[Optional[float], Option(
        "--sft-lr", help="RAFT: the LR your SFT stage used (RAFT starts at a quarter).")] = None,
    variant: o.Variant = None,
    set_: o.Set = [],  # noqa: B006  (read as the default, never mutated)
    rules: o.Rules = [],  # noqa: B006
    fmt: Annotated[str, o.format_option(RESULT)] = "text",
    explain: Annotated[bool, Option(
        "--explain", help="Print every value's trace: rules, rows, formulas, sources, notes.")] = False,
    output: o.Output = None,
    no_detect: o.NoDetect = False,
) -> None:
    """Recommend a fine-tuning config; every value names the rule and source that set it."""
    from advisor import api
    from advisor.facts.task import parse_count
    from advisor.render.emit import check_format, emit, say_beside

    check_format(fmt, RESULT)
    book = o.book(rules)
    launch = None
    if launch_config is not None:
        from advisor.configs.sharding import read_launch_config

        launch = read_launch_config(launch_config)
    rec = api.recommend(
        book=book, pins=o.parse_set(set_, book), flags=o.sharding_flags(sharding, offload), launch=launch,
        model=model, method=method, peft=peft, gpu=gpu, gpu_mem=gpu_mem,
        gpus=gpus, dataset_size=parse_count(dataset_size, "--dataset-size") if dataset_size is not None else None,
        seq_len=seq_len, cycles=cycles, use_case=use_case, situation=situation, sft_lr=sft_lr, variant=variant,
        detect_gpu=not no_detect,
    )
    from advisor.registries import writable_format_ids

    options: dict[str, object] = {"explain": explain} if fmt == "text" else {}
    if fmt in writable_format_ids():
        options["book"] = book  # the trainer's keys are the rulebook's trainer_keys
    emit(rec, fmt, output, **options)
    say_beside(fmt, output, rec.adapted, rec.warnings)
