"""`advisor memory`: the predicted peak GPU memory of a job, itemised, and the micro-batch that fits."""

from __future__ import annotations

from typing import Annotated

from advisor.commands import options as o
from advisor.commands.params import Option

RESULT = "advisor.memory.plan.MemoryAnswer"
EPILOG = ("Examples:\n\n"
          "  advisor memory --model llama-8b --method sft --peft qlora --gpu rtx-4090\n\n"
          "  advisor memory --model qwen2.5-7b --method dpo --seq-len 2048 --micro-batch 2 --gpu a100-40gb --format json\n\n"
          "  advisor memory --model llama-3.1-70b --method sft --peft full --gpu h100 --gpus 32 --sharding zero3\n\n"
          "  advisor memory --model llama-8b --method dpo --variant simpo --peft full --gpu h100 --gpus 8 --sharding zero3\n\n"
          "Exit code 1 when the job does not fit the GPU (under the safety margin).")


def memory(
    model: o.Model,
    method: o.Method,
    peft: o.FitPeft = None,
    variant: o.Variant = None,
    seq_len: o.SeqLen = None,
    micro_batch: o.MicroBatch = None,
    gpu: o.Gpu = None,
    gpu_mem: o.GpuMem = None,
    gpus: o.Gpus = None,
    sharding: o.Sharding = None,
    offload: o.Offload = [],  # noqa: B006
    attention: Annotated[str, Option(
        "--attention", help="sdpa | flash | eager (eager keeps the s x s scores).")] = "sdpa",
    set_: o.Set = [],  # noqa: B006
    rules: o.Rules = [],  # noqa: B006
    fmt: Annotated[str, o.format_option(RESULT)] = "text",
    output: o.Output = None,
    no_detect: o.NoDetect = False,
) -> int:
    """Predicted peak GPU memory of a fine-tuning job, itemised, and the micro-batch that fits
    (default: the largest that fits)."""
    from advisor import api
    from advisor.exitcodes import Exit
    from advisor.render.emit import check_format, emit, say_beside

    check_format(fmt, RESULT)
    book = o.book(rules)
    answer = api.memory(book=book, pins=o.parse_set(set_, book), attention=attention, micro_batch=micro_batch,
                        flags=o.sharding_flags(sharding, offload),
                        model=model, method=method, peft=peft, variant=variant, gpu=gpu, gpu_mem=gpu_mem, gpus=gpus,
                        seq_len=seq_len, detect_gpu=not no_detect)
    emit(answer, fmt, output)
    say_beside(fmt, output, answer.rec.adapted, answer.rec.warnings)
    return int(Exit.FINDINGS if answer.memory.fits is False else Exit.OK)
