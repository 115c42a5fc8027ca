"""Options several commands share, as ``Annotated`` aliases: one name and one help text per concept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from advisor.commands.params import Argument, Option
from advisor.errors import AdvisorError
from advisor.facts.task import PEFTS
from advisor.registries import format_ids, method_ids, offload_ids, sharding_ids

if TYPE_CHECKING:
    from advisor.rulebook.load import Rulebook

GPU_MEM_HELP = "One GPU's memory in GiB, as nvidia-smi's memory.total / 1024 (an 80 GB H100: 79.6)."

Model = Annotated[str, Option(
    "--model", "-m", help="Registry alias (advisor models), hub id, or a config.json / model dir.")]
METHODS_HELP = " | ".join(method_ids())  # rules/registry/methods.yaml
PEFTS_HELP = " | ".join(PEFTS)
# the variants of rules/variants.yaml, which is not read at start-up for a help text (tests/test_registries.py
# holds this to it)
VARIANTS_HELP = ("The method's loss variant (rules/variants.yaml): ipo, ldpo, simpo, orpo, cpo, kto (DPO); "
                 "dr_grpo, dapo, gspo, rloo (GRPO); rlvr (PPO).")
Method = Annotated[str, Option("--method", help=METHODS_HELP)]
Peft = Annotated[str, Option("--peft", help=PEFTS_HELP)]
# recommend / memory: unset is LoRA, which gives way to QLoRA on a GPU LoRA does not fit (rules/memory.yaml fit_to_gpu)
FitPeft = Annotated[Optional[str], Option(
    "--peft", help=f"{PEFTS_HELP} (default: lora, or qlora when lora does not fit the GPU given and qlora does).")]
OptModel = Annotated[Optional[str], Option(
    "--model", "-m", help="The model, when the config does not name one the registry knows.")]
OptMethod = Annotated[Optional[str], Option("--method", help=f"{METHODS_HELP} (overrides the config).")]
Variant = Annotated[Optional[str], Option(
    "--variant", help=VARIANTS_HELP)]
OptVariant = Annotated[Optional[str], Option("--variant", help=f"{VARIANTS_HELP} (overrides the config).")]
OptPeft = Annotated[Optional[str], Option("--peft", help=f"{PEFTS_HELP} (overrides the config).")]
Gpu = Annotated[Optional[str], Option("--gpu", help="GPU name from the registry (advisor gpus).")]
GpuMem = Annotated[Optional[float], Option("--gpu-mem", help=GPU_MEM_HELP)]
Gpus = Annotated[Optional[int], Option(
    "--gpus", help="Number of GPUs, every one of them (default 1). Without --sharding each holds a full "
                   "replica (DDP); with tensor / context parallel sizes (--set, an Axolotl file's mesh) the "
                   "data-parallel world is the GPUs over their product.")]
Sharding = Annotated[Optional[str], Option(
    "--sharding", help=f"How the GPUs split the training state: {' | '.join(sharding_ids())} "
                       "(overrides the config's deepspeed / fsdp keys).")]
Offload = Annotated[list[str], Option(
    "--offload", help=f"CPU offload: {' | '.join(offload_ids())} (repeatable or comma list; ZeRO / FSDP only).")]
LaunchConfig = Annotated[Optional[Path], Option(
    "--launch-config", help="An accelerate launch config (accelerate launch --config_file): sharding, offload and "
                            "num_processes.")]
SeqLen = Annotated[Optional[int], Option(
    "--seq-len", help="Pin the maximum sequence length (tokens); a probe trains at this length.")]
MicroBatch = Annotated[Optional[int], Option("--micro-batch", help="Pin the per-GPU micro-batch.")]
Accumulation = Annotated[Optional[int], Option("--accumulation", help="Pin the gradient accumulation steps.")]
Cycles = Annotated[Optional[int], Option("--cycles", help="RAFT cycles.")]
DatasetSize = Annotated[Optional[str], Option(
    "--dataset-size", help="Training examples, e.g. 20000 or 20k (prompts for GRPO/PPO, samples per cycle for RAFT).")]
Set = Annotated[list[str], Option(
    "--set", help="Pin a parameter: --set lora_rank=64 (repeatable). The LR follows the batch and steps.")]
Rules = Annotated[list[Path], Option(
    "--rules", help="A directory of your own rule files, layered over the built-in ones (same id replaces). "
                    "Repeatable.")]
Output = Annotated[Optional[Path], Option(
    "--output", "-o", help="Write the output to this file (atomically) instead of stdout.")]
NoDetect = Annotated[bool, Option("--no-detect", help="Do not ask nvidia-smi when no --gpu / --gpu-mem is given.")]
ConfigFormat = Annotated[Optional[str], Option(
    "--config-format", help=f"Force the config reader: {' | '.join(format_ids())}.")]
Plot = Annotated[Optional[Path], Option(
    "--plot", help="Write a PNG plot to this file (needs llm-finetune-advisor[plot]).")]


def format_option(result_type: str) -> Any:
    """--format, listing the formats the result type has renderers for."""
    from advisor.render.emit import formats

    return Option("--format", "-f", help=" | ".join(formats(result_type)))


def fail_on_option(default: str, what: str = "findings") -> Any:
    from advisor.exitcodes import FAIL_ON

    return Option("--fail-on", help=f"Exit 1 on {what} at or above: {' | '.join(FAIL_ON)} (default {default}).")


def sharding_flags(sharding: str | None, offload: list[str]) -> dict[str, Any]:
    """--sharding and --offload as the flags that pin `sharding` and `offload` (checked: exit 2 on a word
    the registry lacks, or an offload the strategy does not take)."""
    from advisor.memory.estimate import sharding_of

    flags: dict[str, Any] = {}
    if sharding is not None:
        flags["--sharding"] = sharding
    words = [w.strip() for item in offload for w in item.split(",") if w.strip()]
    if words:
        flags["--offload"] = words
    if sharding is not None:  # the pair is checked where both are known; alone, each against the registry
        checked = sharding_of({"sharding": sharding, "offload": words})
        flags["--sharding"] = checked["sharding"]
    for word in words:
        if word.lower() not in offload_ids():
            raise AdvisorError(f"--offload: unknown target {word!r}", hint=f"one of {', '.join(offload_ids())}")
    if words:
        flags["--offload"] = [w.lower() for w in words]
    return flags


def book(rule_dirs: list[Path]) -> Rulebook:
    from advisor.rulebook import load_rulebook

    return load_rulebook(rule_dirs)


def parse_set(items: list[str], rulebook: Rulebook) -> dict[str, Any]:
    """--set KEY=VALUE pins, each checked against the parameter it names."""
    if not items:
        return {}  # yaml's import is a twentieth of a recommend run
    from advisor.rulebook.model import as_type, type_words
    from advisor.safeio import clip, load_yaml_value

    pins: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AdvisorError(f"--set {clip(item)}: expected KEY=VALUE", hint="e.g. --set lora_rank=64")
        if key not in rulebook.parameters:
            raise AdvisorError(f"--set {clip(item)}: unknown parameter {clip(key)}",
                               hint="`advisor rules list` shows the parameters rules set")
        param = rulebook.parameters[key]
        value = load_yaml_value(raw, f"--set {clip(item)}")
        # 8.5 for an int is no rank (it was cut to 8), "abc" no number; a list is [a, b] or, as LLaMA-Factory's
        # lora_target writes it, a, b
        typed = ("int", "float", "list_str")
        try:
            pins[key] = as_type(param.type, value) if value is not None and param.type in typed else value
        except (TypeError, ValueError, OverflowError) as exc:
            raise AdvisorError(f"--set {clip(item)}: {clip(value)} is not {type_words(param.type)}",
                               hint=f"{key} takes {type_words(param.type)}") from exc
        problem = param.problem(pins[key])
        if problem is not None:
            raise AdvisorError(f"--set {clip(item)}: {problem}")
    return pins


# What `advisor probe` and `advisor sweep` share: what to probe and how.
ProbeConfig = Annotated[Optional[Path], Argument(
    help="A config advisor validate reads (advisor, Axolotl, LLaMA-Factory, TRL / HF). Or use --model/--method.")]
ProbeModel = Annotated[Optional[str], Option(
    "--model", "-m", help="Registry alias, hub id, model directory, or config.json (with --random-init).")]
ProbeGpu = Annotated[Optional[str], Option(
    "--gpu", help="GPU name (advisor gpus), for the recommendation's facts.")]
RandomInit = Annotated[bool, Option("--random-init", help="Build the model from its config with random weights.")]
Data = Annotated[Optional[Path], Option(
    "--data", help="JSONL (text | prompt/completion | messages | prompt/chosen/rejected) or a datasets directory. "
                   "Default: the built-in corpus.")]
NoPacking = Annotated[bool, Option(
    "--no-packing", help="Pad each example to the sequence length instead of packing.")]
Seed = Annotated[int, Option("--seed", help="Seed for data order and adapter initialisation.")]
MaxMemory = Annotated[Optional[float], Option(
    "--max-memory", help="Memory cap in GiB (CUDA: the allocator's limit; CPU: peak RSS per step).")]
Device = Annotated[str, Option("--device", help="auto | cpu | cuda")]


def plan_inputs(rulebook: Rulebook, *, config: Path | None, config_format: str | None, model: str | None,
                method: str | None, peft: str | None, variant: str | None, gpu: str | None, gpu_mem: float | None,
                no_detect: bool, random_init: bool, data: Path | None, no_packing: bool, seq_len: int | None,
                micro_batch: int | None, accumulation: int | None, max_memory: float | None, device: str,
                set_: list[str]) -> dict[str, Any]:
    """What `probe` and `sweep` both plan from: build_plan's keywords."""
    if config is None and (model is None or method is None):
        raise AdvisorError("give a CONFIG, or --model and --method", hint="advisor probe --help")
    if config is not None and not config.is_file():
        raise AdvisorError(f"{config}: no such file")
    from advisor.registries import check_flag

    for flag, value in (("--gpu-mem", gpu_mem), ("--seq-len", seq_len), ("--micro-batch", micro_batch),
                        ("--accumulation", accumulation), ("--max-memory", max_memory)):
        check_flag(flag, value)
    return {"config": config, "config_format": config_format, "model": model,
            "method": method, "peft": peft, "variant": variant, "gpu": gpu, "gpu_mem": gpu_mem, "detect_gpu": not no_detect,
            "random_init": random_init, "data": data, "packing": not no_packing,
            "seq_len": seq_len, "micro_batch": micro_batch, "accumulation": accumulation, "max_memory_gb": max_memory,
            "device": device, "pins": parse_set(set_, rulebook)}
