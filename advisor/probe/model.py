"""Loading the model the probe trains: weights (local, hub or random init), quantization, adapter.

QLoRA: bitsandbytes NF4 with double quantization, computing in bf16 where the GPU has it (fp32
on CPU), then peft's prepare_model_for_kbit_training and a LoraConfig with the plan's rank,
alpha, dropout and targets. LoRA: the base in the compute dtype, frozen, with the same adapter.
Full: every weight trains, kept in fp32 with autocast (what Trainer's bf16=True does).

A random-init model for QLoRA is built from its config, saved once to a temporary directory
and loaded back through from_pretrained with the quantization config: the same path a real
checkpoint takes. The base model of adapter runs is cached between runs of the same source
(the adapter is unloaded after each run), so repeated probes only pay for their steps.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from advisor.probe.plan import ProbeInputError, ProbePlan
from advisor.probe.result import CouldNotRun
from advisor.probe.tokenizer import Codec, cache_only, load_codec

INIT_SEED = 0  # not-knowledge: random-init weights are the same in every run (the plan's seed varies the adapter)
_TMP_CHECKPOINTS: dict[tuple[Any, ...], str] = {}
_BASE_CACHE: dict[tuple[Any, ...], tuple[Any, Codec, list[str]]] = {}


@dataclass
class Precision:
    device: str
    compute: Any  # torch dtype of matmuls
    weights: Any  # torch dtype the frozen / trained weights are held in
    autocast: Any | None  # dtype for torch.autocast, or None
    fp16_scaler: bool
    label: str


@dataclass
class Built:
    model: Any
    codec: Codec
    precision: Precision
    notes: list[str] = field(default_factory=list)
    cache_key: tuple[Any, ...] | None = None
    trainable: int = 0
    total: int = 0


def pick_device(plan: ProbePlan) -> str:
    import torch

    if plan.device == "cuda" and not torch.cuda.is_available():
        raise CouldNotRun("--device cuda: torch sees no CUDA GPU", hint="install the CUDA build of torch, or use --device cpu")
    if plan.device == "cpu" or not torch.cuda.is_available():
        return "cpu"
    return "cuda"


def precision_for(plan: ProbePlan, device: str) -> Precision:
    import torch

    if device != "cuda":
        return Precision(device, torch.float32, torch.float32, None, False, "fp32 (CPU)")
    if plan.bf16 and torch.cuda.is_bf16_supported():
        compute, label = torch.bfloat16, "bf16"
    elif plan.bf16:
        compute, label = torch.float16, "fp16 (the GPU has no bf16)"
    else:
        compute, label = torch.float16, "fp16 (the config turns bf16 off)"
    weights = torch.float32 if plan.peft == "full" else compute
    return Precision(device, compute, weights, compute, compute == torch.float16, label)


def _config_object(raw: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    cfg = {k: v for k, v in raw.items() if k not in ("architectures", "torch_dtype", "dtype", "transformers_version")}
    model_type = cfg.pop("model_type", None)
    if not model_type:
        raise ProbeInputError("--random-init: the config has no model_type")
    try:
        return AutoConfig.for_model(model_type, **cfg)
    except (ValueError, KeyError) as exc:
        raise CouldNotRun(f"--random-init: transformers cannot build a {model_type!r} config ({exc})") from exc


def _random_model(plan: ProbePlan, prec: Precision) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    assert plan.model.config is not None
    cfg = _config_object(plan.model.config)
    torch.manual_seed(INIT_SEED)
    # Built directly on the device: initialising a 1B model on the CPU first costs minutes.
    with torch.device(prec.device):
        return AutoModelForCausalLM.from_config(cfg, dtype=prec.weights)


def _quant_config(prec: Precision) -> Any:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=prec.compute)


def _random_checkpoint(plan: ProbePlan, prec: Precision) -> str:
    key = (*plan.model.cache_key, str(prec.weights))
    if key not in _TMP_CHECKPOINTS:
        directory = tempfile.mkdtemp(prefix="advisor-probe-init-")
        atexit.register(shutil.rmtree, directory, True)
        model = _random_model(plan, prec)
        model.save_pretrained(directory)
        del model
        _TMP_CHECKPOINTS[key] = directory
    return _TMP_CHECKPOINTS[key]


def _auto(name: str) -> Any:
    """The transformers Auto class of that name ("": AutoModelForCausalLM)."""
    import transformers

    return getattr(transformers, name or "AutoModelForCausalLM")


def _load_base(plan: ProbePlan, prec: Precision, auto_class: str = "", model_kwargs: dict[str, Any] | None = None
               ) -> tuple[Any, list[str]]:
    notes: list[str] = []
    src = plan.model
    if src.random_init:
        origin = {"registry": "registry entry", "config": "config.json", "local": "config.json", "hub": "hub config.json"}
        notes.append(f"random-init weights from the {origin[src.kind]} of {src.spec} (seed {INIT_SEED}): "
                     "memory and speed are the real model's, the loss is not a pretrained model's")
        if plan.peft != "qlora" and not auto_class:
            return _random_model(plan, prec), notes
        where = _random_checkpoint(plan, prec)
        notes.append("quantized by saving the random-init model and loading it back with the 4-bit config")
    else:
        where = src.load_from
    kwargs: dict[str, Any] = {"dtype": prec.weights, "device_map": {"": prec.device}, **(model_kwargs or {})}
    if plan.peft == "qlora":
        kwargs["quantization_config"] = _quant_config(prec)
    down = cache_only(where)
    if down is not None:  # transformers 5.25 asks the hub for an adapter_config.json without local_files_only
        kwargs.update(local_files_only=True, adapter_kwargs={"local_files_only": True})
    try:
        model = _auto(auto_class).from_pretrained(where, **kwargs)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        why = f"it is not in the Hugging Face cache, and {down}" if down is not None else first[:200]
        raise CouldNotRun(f"cannot load model {src.spec!r}: {why}",
                          hint="offline? pass a local model directory, or --random-init to build it from its config") from exc
    return model, notes


def _keep_cpu_4bit_trainable(model: Any) -> None:
    """bitsandbytes repacks a CPU Linear4bit's weight for AVX512-BF16 inference the first time it
    runs in eval mode without grad (our held-out evaluation), and the repacked kernel has no
    backward: training after the first evaluation would silently lose the gradient through the
    base layers. Turning that inference path off keeps every forward differentiable."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _wrap(plan: ProbePlan, base: Any) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    gc_kwargs = {"use_reentrant": False}
    if plan.peft == "qlora":
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=plan.gradient_checkpointing,
                                               gradient_checkpointing_kwargs=gc_kwargs)
    elif plan.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
    if plan.peft == "full":
        return base
    targets: Any = list(plan.lora_target_modules)
    if targets == ["all-linear"]:
        targets = "all-linear"
    lora = LoraConfig(r=plan.lora_rank, lora_alpha=plan.lora_alpha, lora_dropout=plan.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none")
    torch.manual_seed(plan.seed)
    try:
        return get_peft_model(base, lora)
    except ValueError as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0]
        raise ProbeInputError(f"lora_target_modules {', '.join(plan.lora_target_modules)}: {first[:200]}",
                              hint="name modules this model has (advisor validate lists the family's)") from exc


def build(plan: ProbePlan, device: str, *, cache: bool) -> Built:
    prec = precision_for(plan, device)
    key = (*plan.model.cache_key, plan.peft, device, str(prec.weights), plan.gradient_checkpointing)
    if cache and plan.peft != "full" and key in _BASE_CACHE:
        base, codec, notes = _BASE_CACHE.pop(key)
        notes = [*notes]
    else:
        _BASE_CACHE.clear()  # one cached base at a time: memory is the thing being measured
        base, notes = _load_base(plan, prec)
        base.config.use_cache = False
        if plan.peft == "qlora" and device == "cpu":
            _keep_cpu_4bit_trainable(base)
        src = plan.model
        codec = load_codec(src.load_from, src.kind, int(base.get_input_embeddings().num_embeddings),
                           allow_hub=not src.random_init or src.kind == "hub")
    model = _wrap(plan, base)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return Built(model=model, codec=codec, precision=prec, notes=notes, cache_key=key if cache else None,
                 trainable=trainable, total=total)


def release(built: Built | None) -> None:
    """Unload the adapter and keep the base for the next run of the same source (or drop it)."""
    if built is None:
        return
    model, built.model = built.model, None
    if built.cache_key is not None and hasattr(model, "unload"):
        _BASE_CACHE[built.cache_key] = (model.unload(), built.codec, built.notes)
    del model


def lora_config(plan: ProbePlan, exclude: tuple[str, ...] = (), task_type: str = "CAUSAL_LM") -> Any:
    """The plan's adapter as a peft LoraConfig (None for full fine-tuning), less the ``exclude`` targets.
    ``task_type`` is peft's (SEQ_CLS for a reward model: peft then trains its score head in full)."""
    from peft import LoraConfig

    if plan.peft == "full":
        return None
    targets: Any = [t for t in plan.lora_target_modules if t not in exclude]
    if targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(r=plan.lora_rank, lora_alpha=plan.lora_alpha, lora_dropout=plan.lora_dropout,
                      target_modules=targets, task_type=task_type, bias="none")


def build_unwrapped(plan: ProbePlan, device: str, auto_class: str = "", model_kwargs: dict[str, Any] | None = None
                    ) -> Built:
    """The base model for a TRL trainer, without the adapter: the trainer wraps it from ``lora_config`` and
    disables the adapter for the reference pass, as it does for a user's run. A random-init model is loaded
    from its saved checkpoint, so a trainer that builds a frozen reference copy (full fine-tuning) can load
    it from the model's own path. ``auto_class`` (a transformers Auto class name, built with ``model_kwargs``)
    is the trainer's model class when it is not the causal LM: a reward model's sequence classifier."""
    from peft import prepare_model_for_kbit_training

    prec = precision_for(plan, device)
    base: Any
    _BASE_CACHE.clear()  # memory is the thing being measured: no cached base of an earlier run beside this one
    src = plan.model
    notes: list[str] = []
    extra = dict(model_kwargs or {})
    if src.random_init and plan.peft != "qlora":
        notes.append(f"random-init weights from the config of {src.spec} (seed {INIT_SEED}): memory and speed are "
                     "the real model's, the loss is not a pretrained model's")
        base = _auto(auto_class).from_pretrained(_random_checkpoint(plan, prec), dtype=prec.weights,
                                                 device_map={"": prec.device}, **extra)
    else:
        base, notes = _load_base(plan, prec, auto_class, extra)
    base.config.use_cache = False
    if plan.peft == "qlora":
        if device == "cpu":
            _keep_cpu_4bit_trainable(base)
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=plan.gradient_checkpointing,
                                               gradient_checkpointing_kwargs={"use_reentrant": False})
    codec = load_codec(src.load_from, src.kind, int(base.get_input_embeddings().num_embeddings),
                       allow_hub=not src.random_init or src.kind == "hub")
    total = sum(p.numel() for p in base.parameters())
    return Built(model=base, codec=codec, precision=prec, notes=notes, cache_key=None, trainable=0, total=total)
