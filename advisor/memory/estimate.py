"""Peak GPU memory of one training step, itemised. Pure arithmetic over the model's module
shapes and the coefficients of rules/memory.yaml; no torch.

Peak = static (weights, trainable state, reference model) + the largest of three phases: the
forward / backward pass (activations and the loss's logits; with checkpointing, the loss's backward
or one recomputed layer, whichever is larger), optimizer.step()'s own buffer, and for GRPO / PPO the
generation (KV cache); plus the caching allocator's overhead (together: what
torch.cuda.max_memory_reserved reports), and outside the allocator bitsandbytes' paged optimizer
states and the CUDA context (what nvidia-smi adds on top).

GRPO / PPO with ``max_prompt_length`` and ``max_completion_length`` train on prompt + completion
tokens, and TRL computes the loss's logits for the completion only (``logits_to_keep``). With
``use_vllm`` the completions come from vLLM: in server mode on its own GPUs (no KV cache here), in
colocate mode (TRL's default) inside this process, where it reserves ``vllm_gpu_memory_utilization``
of the GPU (rules/memory.yaml vllm-colocate-default-share when not given).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from advisor import registries
from advisor.errors import FactError
from advisor.facts.job import JobFacts
from advisor.facts.layers import cached_tokens
from advisor.facts.mesh import DeviceMesh
from advisor.memory.knowledge import GIB, Knowledge, knowledge
from advisor.memory.shapes import Counts, count
from advisor.output import fmt_count
from advisor.rulebook.load import Rulebook

QUANTIZATIONS = ("none", "nf4", "nf4-dq", "int8", "gptq-int4")
ATTENTIONS = ("sdpa", "flash", "eager")
TRAINERS = ("hf", "deepspeed-zero2")
_BITS = {"nf4": "nf4-bits", "nf4-dq": "nf4-bits-double-quant", "int8": "int8-bits", "gptq-int4": "gptq-int4-bits"}
QUANTIZING = ("quantization", "load_in_4bit", "load_in_8bit")  # the settings that load the base quantized
_BNB = ("nf4", "nf4-dq", "int8")  # bitsandbytes layers: they return their input's dtype
DEFAULT_VLLM_MODE = "colocate"  # TRL's default (rules/memory.yaml vllm-colocate-default-share says why)
VLLM_ITEM = "vLLM (colocated: weights, KV cache)"  # outside torch's allocator: the table's total names it


@dataclass(frozen=True)
class Setup:
    """What the estimate assumes, from the job's facts and the resolved parameters."""

    method: str
    peft: str
    micro_batch: int
    seq_len: int
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()
    lora_dropout: float = 0.0
    gradient_checkpointing: bool = False
    quantization: str = "none"
    kbit_upcast: bool = False
    # Axolotl's quantize_moe_experts: the fused 3-D expert weights quantized on load (monkeypatch/moe_quant.py)
    quantize_experts: bool = False
    optimizer: str = "adamw_torch"
    attention: str = "sdpa"
    trainer: str = "hf"
    adapter_dtype: str = "fp32"  # peft's default; artidoro/qlora casts adapters to bf16
    generation_batch: int = 0  # GRPO / PPO completions generated at once per GPU
    completion_len: int = 0  # GRPO / PPO: the loss's logits cover these tokens (0: the whole sequence)
    prompt_assumed: int = 0  # the prompt tokens counted without a max_prompt_length (rl-prompt-tokens)
    generator: str = "generate"  # GRPO / PPO: the model's generate(), or vLLM as a server or colocated
    vllm_share: float = 0.0  # vllm-colocate: the share of the GPU vLLM reserves (0: not given, TRL's default)
    pure_bf16: bool = False  # full fine-tuning in bf16 throughout: no fp32 master weights, bf16 AdamW states
    vllm_mode_given: bool = True  # False: use_vllm without vllm_mode (TRL's default mode assumed)
    accumulation: int = 1  # micro-batches per optimizer step: from the second on, the gradients are held
    sharding: str = "none"  # rules/registry/sharding.yaml: which items divide by the world size
    offload: tuple[str, ...] = ()  # what CPU offload moves to CPU RAM (optimizer, parameters)
    world_size: int = 1  # data-parallel GPUs (gpu.count)
    # An Axolotl device mesh (advisor.facts.mesh): tensor parallel splits each decoder layer's weights,
    # context parallel each sequence; the GPUs a sharded item divides over (0: the world size)
    tensor_parallel: int = 1
    context_parallel: int = 1
    shard_gpus: int = 0
    variant: str | None = None  # the method's loss variant (rules/variants.yaml); None: the method's own
    modules_to_save: tuple[str, ...] = ()  # modules trained in full beside the adapters (lora_modules_to_save)
    reference_free: bool = False  # no reference model though the method has one: the variant's loss (SimPO, ORPO)
    reference_off: str = ""  # or the setting that drops it ("beta 0" for GRPO); "": none given

    @property
    def strategy(self) -> registries.Strategy:
        return registries.strategies()[self.sharding]

    @property
    def gpus(self) -> int:
        """Every GPU of the run: the data-parallel world with its tensor and context parallel partners."""
        return self.world_size * self.tensor_parallel * self.context_parallel

    @property
    def local_seq_len(self) -> int:
        """The tokens of each sequence one GPU's activations hold: its context-parallel share."""
        return -(-self.seq_len // self.context_parallel)

    @property
    def spec(self) -> registries.Method | None:
        """What the method feeds the GPU (rules/registry/methods.yaml); None for a method it does not know."""
        return registries.method(self.method)

    @property
    def reference_model(self) -> bool:
        """A frozen reference model scores each batch: the method's flag, unless its variant's loss has none."""
        spec = self.spec
        return spec is not None and spec.reference_model and not self.reference_free

    @property
    def score_head(self) -> bool:
        """The model ends in a scalar score head instead of lm_head (a reward model)."""
        spec = self.spec
        return spec is not None and spec.head == "score"


@dataclass(frozen=True)
class Item:
    name: str
    gb: float
    detail: str
    sources: tuple[str, ...] = ()  # coefficient ids in rules/memory.yaml
    phase: str = "static"  # static | grads | paged | train | step | generate | fixed

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sources": list(self.sources)}


@dataclass(frozen=True)
class Estimate:
    items: tuple[Item, ...]
    allocated_gb: float
    reserved_gb: float  # comparable with torch.cuda.max_memory_reserved()
    total_gb: float  # reserved + paged optimizer states + CUDA context: what the GPU holds
    setup: Setup
    counts: Counts
    notes: tuple[str, ...] = field(default_factory=tuple)
    paged_gb: float = 0.0  # bitsandbytes' paged optimizer states: CUDA managed memory, evictable to CPU

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "total_gb": round(self.total_gb, 2), "reserved_gb": round(self.reserved_gb, 2),
            "allocated_gb": round(self.allocated_gb, 2), "paged_gb": round(self.paged_gb, 2),
            "setup": asdict(self.setup),
            "params": {"total": c.total, "quantizable_linear": c.linear_weights, "experts": c.experts,
                       "other": c.other, "lora_trainable": c.lora, "lora_modules": list(c.lora_modules),
                       "architecture": c.architecture},
            "items": [i.as_dict() for i in self.items], "notes": list(self.notes),
        }


def _get(params: dict[str, Any], name: str, default: Any) -> Any:
    value = params.get(name)
    return default if value is None else value


def setup_from(job: JobFacts, params: dict[str, Any], variants: dict[str, dict[str, Any]] | None = None,
               prompt_tokens: int = 0) -> Setup:
    """The Setup for ``job`` with ``params`` (resolved parameter values, plus the memory-only knobs
    quantization, attention, trainer, kbit_upcast). Sharding and offload are parameters (`sharding`,
    `offload`); the world size is the job's GPU count. ``variants`` (rules/variants.yaml) say whether the
    job's loss variant drops its method's reference model. ``prompt_tokens``: the prompt counted on top of a
    completion-capped method's completions when no max_prompt_length is given (rl-prompt-tokens)."""
    task = job.task
    variant = task.variant
    reference_free = (variant is not None and (variants or {}).get(variant, {}).get("reference_model") is False)
    method = task.method or "sft"
    spec = registries.method(method)
    reference_off = ""
    if spec is not None and spec.reference_off is not None and not spec.loads_reference(params):
        reference_off = f"{spec.reference_off[0]} {spec.reference_off[1]:g}"
    seq = params.get("max_seq_length") or task.seq_len
    if not seq:
        raise FactError("memory: no sequence length", hint="give --seq-len or --set max_seq_length=N")
    adapter = task.peft in ("lora", "qlora")
    if params.get("quantization") is not None:
        quant = str(params["quantization"])
    elif params.get("load_in_4bit") or (task.peft == "qlora" and params.get("load_in_4bit") is None):
        quant = "nf4-dq" if _get(params, "bnb_4bit_use_double_quant", True) else "nf4"
    elif params.get("load_in_8bit"):
        quant = "int8"
    else:
        quant = "none"
    if task.peft == "full" and quant != "none":
        # Sizing 16-bit full fine-tuning instead would answer a job that never starts (VQT001's sources)
        key = next((k for k in QUANTIZING if params.get(k)), "quantization")
        raise FactError(
            f"memory: {key} {_shown(params.get(key, quant))} with full fine-tuning: transformers' Trainer and Axolotl "
            "refuse to train a quantized model without an adapter (its quantized weights are frozen)",
            hint=f"--peft qlora (or lora) trains adapters over the quantized base; drop {key} to fully fine-tune "
                 "16-bit weights (advisor rules show VQT001)")
    for flag, value, allowed in (("quantization", quant, QUANTIZATIONS),
                                 ("attention", _get(params, "attention", "sdpa"), ATTENTIONS),
                                 ("trainer", _get(params, "trainer", "hf"), TRAINERS),
                                 ("adapter_dtype", _get(params, "adapter_dtype", "fp32"), ("fp32", "bf16"))):
        if value not in allowed:
            raise FactError(f"memory: unknown {flag} {value!r}", hint=f"one of {', '.join(allowed)}")
    gpus = max(1, job.gpu.count)
    mesh = DeviceMesh.of(params)
    gen = completion = assumed_prompt = 0
    generator = "generate"
    if spec is not None and spec.generates:
        per_step = params.get("effective_batch_size") or (
            _get(params, "prompts_per_step", 1) * _get(params, "num_generations", 1))
        gen = math.ceil(int(per_step) / gpus)
        completion = int(_get(params, "max_completion_length", 0))
        prompt = int(_get(params, "max_prompt_length", 0))
        if spec.completion_cap:
            # the job's max_seq_length is what its file writes as the completion cap, and no prompt is cut
            completion = completion or int(seq)
            if not prompt:
                prompt = assumed_prompt = prompt_tokens
        if completion and prompt:
            seq = prompt + completion
        elif completion:
            seq = max(int(seq), completion)
        if params.get("use_vllm"):
            mode = str(_get(params, "vllm_mode", DEFAULT_VLLM_MODE))
            if mode not in ("server", "colocate"):
                raise FactError(f"memory: unknown vllm_mode {mode!r}", hint="server or colocate")
            generator = f"vllm-{mode}"
    return Setup(
        method=method, peft=task.peft, micro_batch=int(_get(params, "micro_batch_size", 1)), seq_len=int(seq),
        lora_rank=int(_get(params, "lora_rank", 0)) if adapter else 0,
        lora_targets=tuple(_get(params, "lora_target_modules", ())) if adapter else (),
        lora_dropout=float(_get(params, "lora_dropout", 0.0)) if adapter else 0.0,
        gradient_checkpointing=bool(_get(params, "gradient_checkpointing", False)),
        quantization=quant, kbit_upcast=bool(_get(params, "kbit_upcast", quant in ("nf4", "nf4-dq", "int8"))),
        quantize_experts=quant != "none" and bool(_get(params, "quantize_moe_experts", False)),
        optimizer=str(_get(params, "optimizer", "adamw_torch")), attention=str(_get(params, "attention", "sdpa")),
        trainer=str(_get(params, "trainer", "hf")), adapter_dtype=str(_get(params, "adapter_dtype", "fp32")),
        generation_batch=gen, completion_len=completion, prompt_assumed=assumed_prompt, world_size=gpus,
        tensor_parallel=mesh.tensor, context_parallel=mesh.context,
        shard_gpus=mesh.shard_group(gpus) if mesh.stated else 0,
        **sharding_of(params),
        generator=generator, vllm_share=float(_get(params, "vllm_gpu_memory_utilization", 0.0)),
        pure_bf16=task.peft == "full" and bool(_get(params, "pure_bf16", False)),
        vllm_mode_given=params.get("vllm_mode") is not None,
        accumulation=int(_get(params, "gradient_accumulation_steps", 1)),
        variant=variant, reference_free=reference_free or bool(reference_off), reference_off=reference_off,
        modules_to_save=tuple(str(m) for m in (_get(params, "lora_modules_to_save", ()) or ())) if adapter else (),
    )


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def sharding_of(params: dict[str, Any]) -> dict[str, Any]:
    """The `sharding` and `offload` parameters, checked against the registry (a one-line error for a
    strategy it does not know or an offload the strategy does not take)."""
    word = str(_get(params, "sharding", "none"))
    strategy = registries.strategy_named(word)
    if strategy is None:
        raise FactError(f"sharding: unknown strategy {word!r}", hint=f"one of {', '.join(registries.sharding_ids())}")
    raw = _get(params, "offload", ())
    offload = tuple(dict.fromkeys(
        w.strip().lower() for item in ([raw] if isinstance(raw, str) else raw) for w in str(item).split(",") if w.strip()))
    for target in offload:
        if target not in registries.offloads():
            raise FactError(f"offload: unknown target {target!r}", hint=f"one of {', '.join(registries.offload_ids())}")
        if target not in strategy.offload:
            allowed = registries.offloads()[target].requires
            raise FactError(f"offload {target}: {strategy.name} cannot offload it",
                            hint=f"--sharding {' | '.join(allowed)} offloads {target}")
    if offload and strategy.offload_together:
        offload = strategy.offload
    return {"sharding": strategy.id, "offload": offload}


def _gb(n_bytes: float) -> float:
    return n_bytes / GIB


class _Builder:
    def __init__(self, know: Knowledge, job: JobFacts, s: Setup) -> None:
        self.k, self.m, self.s = know, job.model, s
        self.c = count(know, job.model, list(s.lora_targets), s.lora_rank)
        self.items: list[Item] = []
        self.notes: list[str] = []
        # What the loss's logits span per token: the vocabulary, or a reward model's one score
        self.outputs = job.model.vocab_size
        if s.score_head:
            # AutoModelForSequenceClassification: nn.Linear(hidden, num_labels=1, bias=False) replaces lm_head,
            # tied or not (transformers' *ForSequenceClassification `score`)
            self.c = replace(self.c, head=job.model.hidden_size)
            self.outputs = 1
            self.notes.append("reward model: a score head (hidden x 1) replaces lm_head, so the loss holds one score "
                              "per token, not the vocabulary's logits")

    def add(self, name: str, n_bytes: float, detail: str, sources: tuple[str, ...], phase: str = "static") -> None:
        if n_bytes > 0:
            self.items.append(Item(name, _gb(n_bytes), detail, sources, phase))

    # -- sharding ------------------------------------------------------------------------
    def divisor(self, item: str) -> int:
        """How many GPUs share ``item`` (optimizer_states, gradients, parameters): the world size
        where the strategy shards it, the GPUs of one node for hybrid sharding, else 1."""
        s = self.s
        if not s.strategy.divides(item):
            return 1
        if s.strategy.hybrid:
            return max(1, min(s.world_size, int(self.k["gpus-per-node"])))
        return max(1, s.shard_gpus or s.world_size)

    def tensor_share(self) -> float:
        """What of the training state one GPU holds under tensor parallelism: each decoder layer's and the
        head's weights split over the tensor-parallel GPUs (transformers' tp_plan: colwise / rowwise
        linears, lm_head colwise_rep), the input embeddings kept whole on each."""
        tp, c = self.s.tensor_parallel, self.c
        if tp <= 1 or c.total <= 0:
            return 1.0
        split = (c.total - c.embed) / c.total
        return split / tp + (1 - split)

    def share(self, n_params: float, item: str) -> float:
        return n_params * self.tensor_share() / self.divisor(item)

    def over(self, item: str) -> str:
        d = self.divisor(item)
        tp = self.s.tensor_parallel
        return ((f" / {d} GPUs ({self.s.strategy.id})" if d > 1 else "")
                + (f" x {self.tensor_share():.2f} (tensor parallel {tp})" if tp > 1 else ""))

    def offloaded(self, target: str) -> bool:
        return target in self.s.offload

    def add_weights(self, name: str, n_params: float, per: float, sources: tuple[str, ...], what: str = "",
                    size: str = "") -> None:
        """Weights: divided by the GPUs that shard the parameters; in CPU RAM under parameter offload.
        ``what`` follows the count, ``size`` replaces the bytes each ("4.127 bits")."""
        if self.offloaded("parameters"):
            return
        self.add(name, self.share(n_params, "parameters") * per,
                 f"{fmt_count(n_params)} params{what} x {size or f'{per:g} B'}{self.over('parameters')}", sources)

    def add_grads(self, name: str, n_params: float, per: float, sources: tuple[str, ...]) -> None:
        """Gradients: divided where they are sharded; with the optimizer in CPU RAM they go there too."""
        if self.offloaded("optimizer"):
            return
        self.add(name, self.share(n_params, "gradients") * per,
                 f"{fmt_count(n_params)} params x {per:g} B{self.over('gradients')}", sources, "grads")

    def sharding_notes(self) -> None:
        s = self.s
        if s.world_size > 1 and s.sharding == "none":
            self.notes.append(f"{s.world_size} GPUs without sharding: data parallel (DDP), each GPU holds a full "
                              "replica of weights, gradients and optimizer states; --sharding zero3 (or a "
                              "DeepSpeed / FSDP config) divides them")
        elif s.sharding != "none":
            parts = ", ".join(i.replace("_", " ") for i in s.strategy.shards)
            over = self.divisor(s.strategy.shards[-1])
            self.notes.append(f"{s.strategy.name}: {parts} divided over {over} GPU{'s' if over != 1 else ''}"
                              + (f"; offloaded to CPU RAM: {', '.join(s.offload)}" if s.offload else ""))
        if s.tensor_parallel > 1:
            self.notes.append(f"tensor parallel {s.tensor_parallel}: each GPU holds {self.tensor_share():.2f} of the "
                              "weights, gradients and optimizer states (the decoder layers and head split, the "
                              "embeddings whole); activations are counted whole")
        if s.context_parallel > 1:
            self.notes.append(f"context parallel {s.context_parallel}: each GPU's activations and logits hold "
                              f"{s.local_seq_len} of each sequence's {s.seq_len} tokens (ring attention)")

    def gathered(self) -> float:
        """ZeRO-3 / FSDP all-gather each layer for forward and backward: those buffers, and DeepSpeed's
        reduce (and ZeRO-3 prefetch) buckets, held through the training pass."""
        k, c, s = self.k, self.c, self.s
        total = 0.0
        if s.strategy.gathers:
            layer = (c.total - c.embed - c.head - c.final_norm) / max(1, c.layers)
            largest = max(layer, c.embed, c.head)
            fsdp = s.sharding.startswith("fsdp")
            cid = "fsdp-gathered-unit-bytes" if fsdp else "zero3-gathered-layer-bytes"
            n_bytes = largest * k[cid]
            ids: tuple[str, ...] = (cid,)
            how = "two units' 16-bit parameters and one unit's gradient" if fsdp else "16-bit parameters and gradients"
            if not fsdp:
                n_bytes += k["zero3-prefetch-bucket-bytes"]
                ids += ("zero3-prefetch-bucket-bytes",)
            self.add("all-gathered layers (sharded parameters made whole)", n_bytes,
                     f"the largest layer ({fmt_count(largest)} params): {how}", ids, "train")
            total += n_bytes
        if s.sharding in ("zero2", "zero3") and s.trainer != "deepspeed-zero2":
            buckets = k["zero-reduce-bucket-bytes"]
            self.add("DeepSpeed gradient reduce bucket", buckets, "reduce_bucket_size (default 5e8) x 16-bit",
                     ("zero-reduce-bucket-bytes",), "train")
            total += buckets
        return total

    def cpu_offload(self) -> None:
        """What offload moves to CPU RAM, per node (an item of its own: not on the GPU)."""
        k, c, s = self.k, self.c, self.s
        if not s.offload:
            return
        trainable = (c.total if s.peft == "full" else c.lora) + self.value_params()
        # Sharded over the world, the states split across the nodes; hybrid sharding replicates them
        # across nodes, so each node's CPU RAM holds all of them.
        nodes = 1 if s.strategy.hybrid else max(1, -(-s.gpus // int(k["gpus-per-node"])))
        ids: list[str] = []
        n_bytes = 0.0
        parts = []
        if self.offloaded("optimizer"):
            sid = k.optimizer_states(s.optimizer)
            per = k["offload-optimizer-cpu-bytes"] + k[sid]  # fp32 master + gradients, and the optimizer's states
            n_bytes += trainable * per
            ids.extend(("offload-optimizer-cpu-bytes", sid))
            parts.append(f"{fmt_count(trainable)} trainable x {per:g} B ({s.optimizer}: "
                         f"{k['offload-optimizer-cpu-bytes']:g} fp32 master + gradients, {k[sid]:g} states)")
        if self.offloaded("parameters"):
            params = c.total + 2 * self.value_params()  # PPO: the value and reward models' weights too
            # TRL wraps full fine-tuning's frozen reference as it wraps the policy (prepare_deepspeed keeps
            # ZeRO-3's offload_param, prepare_fsdp its cpu_offload): its weights are offloaded too
            reference = c.total if self.full_reference() else 0
            n_bytes += (params + reference) * k["offload-parameters-cpu-bytes"]
            ids.append("offload-parameters-cpu-bytes")
            parts.append(f"{fmt_count(params + reference)} params"
                         + (f" ({fmt_count(reference)} of them the reference model)" if reference else "")
                         + f" x {k['offload-parameters-cpu-bytes']:g} B")
        factor = k["offload-cpu-buffer-factor"]
        ids.append("offload-cpu-buffer-factor")
        per_node = n_bytes / nodes * factor
        self.add("CPU RAM for offload (per node, not on the GPU)", per_node,
                 f"({' + '.join(parts)})" + (", on every node (hybrid: replicated across nodes)" if s.strategy.hybrid
                                             else f" / {nodes} node(s)") + f" x {factor:g}", tuple(ids), "cpu")

    # -- static --------------------------------------------------------------------------
    def static(self) -> None:
        k, c, s = self.k, self.c, self.s
        e = k["bytes-16bit"]
        if s.peft == "full" and s.pure_bf16:
            self._pure_bf16()
        elif s.peft == "full":
            self.add_weights("weights (16-bit)", c.total, e, ("bytes-16bit",))
            self.add_grads("gradients (16-bit)", c.total, e, ("bytes-16bit",))
            self.add_optimizer(c.total)
        else:
            self._frozen_weights()
            self._adapters()
        self.sharding_notes()
        spec = s.spec
        if self.full_reference():
            self.add_weights("reference model (frozen copy)", c.total, e, ("bytes-16bit",),
                             size=f"{e:g} B: full fine-tuning keeps a second model")
        elif s.reference_off and s.peft == "full":
            self.notes.append(f"{s.reference_off}: the KL term is off, so the trainer loads no reference model "
                              "(none counted)")
        if spec is not None and spec.value_model:
            self._value_and_reward_models(spec.name)

    def full_reference(self) -> bool:
        """A second, frozen copy of the model scores each batch (with an adapter, peft's disabled adapter does)."""
        return self.s.reference_model and self.s.peft == "full"

    def value_params(self) -> float:
        """The value model's parameters (PPO trains it in full); 0 for a method without one."""
        spec = self.s.spec
        return self.c.total * self.k["value-reward-model-params-ratio"] if spec is not None and spec.value_model else 0.0

    def _value_and_reward_models(self, method: str) -> None:
        """PPO trains a value model in full beside the policy (peft wraps only the policy) and scores with
        a frozen reward model; both at `value-reward-model-params-ratio` of the policy's size."""
        k = self.k
        e, ratio = k["bytes-16bit"], k["value-reward-model-params-ratio"]
        n = self.value_params()
        self.add_weights(f"{method} reward model (frozen, 16-bit)", n, e, ("bytes-16bit", "value-reward-model-params-ratio"))
        self.add_weights(f"{method} value model weights (16-bit)", n, e, ("bytes-16bit", "value-reward-model-params-ratio"))
        self.add_grads(f"{method} value model gradients (16-bit)", n, e, ("bytes-16bit", "value-reward-model-params-ratio"))
        self.add_optimizer(n, f"{method} value model ", ("value-reward-model-params-ratio",))
        self.notes.append(f"{method}: the value and reward models are counted at {ratio:g} x the policy's size "
                          "(value-reward-model-params-ratio); a smaller value or reward model needs less")

    def _pure_bf16(self) -> None:
        k, c = self.k, self.c
        e = k["bytes-16bit"]
        self.add_weights("weights (bf16, trained in place)", c.total, e, ("bytes-16bit",))
        self.add_grads("gradients (bf16)", c.total, e, ("bytes-16bit",))
        self.add_optimizer(c.total)
        self.notes.append("pure bf16: no fp32 master weights; updates smaller than bf16's resolution are lost "
                          "(the reason mixed precision keeps them)")

    def add_optimizer(self, n_total: float, owner: str = "", sources: tuple[str, ...] = ()) -> None:
        """The optimizer's GPU memory for ``n_total`` parameters trained in full (the policy, or PPO's value
        model, which the policy's optimizer trains too), with the run's optimizer and precision; nothing
        under optimizer offload (cpu_offload counts it there)."""
        k, s = self.k, self.s
        if self.offloaded("optimizer"):
            return
        e = k["bytes-16bit"]
        n = self.share(n_total, "optimizer_states")
        sid = k.optimizer_states(s.optimizer)
        label, over = f"{owner}optimizer", self.over("optimizer_states")
        if s.pure_bf16 and not k.paged(s.optimizer):
            # torch's AdamW keeps its states in the weights' dtype: bf16 halves them; bitsandbytes' do not
            halved = k.states_in_param_dtype(s.optimizer)
            per = k[sid] * (e / k["bytes-fp32"] if halved else 1)
            self.add(f"{label} states (bf16, no fp32 master)" if halved else f"{label} states", n * per,
                     f"{fmt_count(n_total)} params x {per:g} B ({s.optimizer}){over}",
                     ((sid, "bytes-16bit", "bytes-fp32") if halved else (sid,)) + sources)
            return
        if not s.pure_bf16:  # pure bf16 keeps no fp32 master: a paged optimizer's states alone
            cid = "full-ft-8bit-optimizer-bytes-per-param" if k.eight_bit(s.optimizer) else "full-ft-bytes-per-param"
            # ZeRO's 16 bytes hold AdamW's states: another optimizer's take their place (SGD keeps none)
            per = k[cid] + (0 if k.eight_bit(s.optimizer) else k[sid] - k["adamw-state-bytes"])
            paged = k[sid] if k.paged(s.optimizer) else 0.0
            swapped = () if k.eight_bit(s.optimizer) or sid == "adamw-state-bytes" else (sid,)
            master_only = paged or not k[sid]  # paged states are an item of their own; SGD keeps none
            self.add(f"{label} (fp32 master weights)" if master_only else f"{label} (fp32 master + states)",
                     n * (per - 2 * e - paged), f"{fmt_count(n_total)} params x {per - 2 * e - paged:g} B "
                     f"({s.optimizer}){over}", (cid, *swapped, *sources))
        self.add_paged(n, sid, owner, sources)

    def add_paged(self, n_params: float, states_id: str, owner: str = "", sources: tuple[str, ...] = ()) -> None:
        if self.k.paged(self.s.optimizer):
            self.add(f"{owner}optimizer states (paged)", n_params * self.k[states_id],
                     f"{fmt_count(n_params)} params x {self.k[states_id]:g} B in CUDA managed memory: outside torch's "
                     "allocator, moved to CPU RAM when the GPU runs short", (states_id, *sources), "paged")

    def _frozen_weights(self) -> None:
        k, c, s = self.k, self.c, self.s
        e = k["bytes-16bit"]
        if s.quantization == "none":
            self.add_weights("weights (16-bit)", c.total, e, ("bytes-16bit",))
            return
        bits_id = _BITS[s.quantization]
        bits = k[bits_id]
        self.add_weights(f"weights ({s.quantization}, linear layers)", c.linear_weights, bits / 8, (bits_id,),
                         size=f"{bits:.3f} bits")
        keep_id = self.kept_dtype()
        keep = k[keep_id]
        what = "fp32 after prepare_model_for_kbit_training" if s.kbit_upcast else "16-bit"
        self.add_weights("weights (kept unquantized)", c.other, keep, (keep_id,),
                         " (embeddings, lm_head, norms, biases)", size=f"{keep:g} B, {what}")
        if c.experts and s.quantize_experts:
            self.add_weights(f"weights ({s.quantization}, fused MoE experts)", c.experts, bits / 8, (bits_id,),
                             size=f"{bits:.3f} bits")
            self.notes.append("quantize_moe_experts: Axolotl quantizes the fused 3-D expert weights on load as "
                              "bitsandbytes does the linear layers (monkeypatch/moe_quant.py)")
        elif c.experts:
            self.add_weights("weights (fused MoE experts, unquantized)", c.experts, keep, (keep_id,))
            # peft maps a family's per-expert names onto the fused parameters (shapes._lora counts those adapters)
            mapped = [m for m in c.modules if m.kind == "experts" and m.targets]
            reached = [m for m in mapped if c.lora and all(t in s.lora_targets for t in m.targets)]
            if reached:
                lora = (f"LoRA reaches {', '.join(m.name for m in reached)} through peft's mapping of "
                        f"{', '.join(t for m in reached for t in m.targets)}")
            elif mapped:
                lora = (f"LoRA reaches them only when target_modules name {', '.join(t for m in mapped for t in m.targets)} "
                        "(peft maps those onto them)")
            else:
                lora = "LoRA target_modules do not reach them (peft target_parameters does)"
            self.notes.append("transformers >= 5 stores MoE experts as fused 3-D parameters: bitsandbytes does "
                              f"not quantize them; {lora}")

    def saved_modules(self) -> dict[str, float]:
        """lora_modules_to_save that peft copies and trains in full: module -> its parameters. A tied
        lm_head is deep-copied from the embedding's weight, so its copy is the embedding's size."""
        c = self.c
        sizes = {"embed_tokens": c.embed, "lm_head": c.head or c.embed}  # Llama-style names (rules/lora.yaml LORA009)
        return {m: float(sizes[m]) for m in dict.fromkeys(self.s.modules_to_save) if sizes.get(m)}

    def kept_dtype(self) -> str:
        """The coefficient id of the bytes per parameter of weights left unquantized (embeddings, lm_head,
        norms), and so of peft's copies of them: fp32 after prepare_model_for_kbit_training, else 16-bit."""
        return "kbit-upcast-bytes" if self.s.quantization != "none" and self.s.kbit_upcast else "bytes-16bit"

    def saved_state_scale(self) -> float:
        """The saved copies' optimizer states (and step buffer) against fp32 ones: torch's AdamW keeps them
        in a 16-bit copy's dtype; bitsandbytes' and an fp32 copy's stay fp32."""
        k = self.k
        halved = self.kept_dtype() == "bytes-16bit" and k.states_in_param_dtype(self.s.optimizer)
        return k["bytes-16bit"] / k["bytes-fp32"] if halved else 1.0

    def _saved_copies(self) -> None:
        """peft's ModulesToSaveWrapper deep-copies each module in its loaded dtype (16-bit, or fp32 after
        prepare_model_for_kbit_training) and trains the copy: weights, gradients and optimizer states.
        peft's adapter upcast (cast_adapter_dtype) reaches only LoRA layers, not these copies."""
        k, s = self.k, self.s
        saved = self.saved_modules()
        if not saved:
            return
        n = sum(saved.values())
        keep_id = self.kept_dtype()
        per = k[keep_id]
        what = ", ".join(saved)
        self.add_weights(f"lora_modules_to_save copies ({what})", n, per, (keep_id,))
        self.add_grads(f"lora_modules_to_save gradients ({what})", n, per, (keep_id,))
        states = k.optimizer_states(s.optimizer)
        if k.paged(s.optimizer):
            self.add_paged(n, states)
            return
        scale = self.saved_state_scale()
        halved = scale != 1
        state_bytes = k[states] * scale
        dtype = ", in the copies' 16-bit dtype" if halved else ""
        self.add(f"lora_modules_to_save optimizer states ({what})", self.share(n, "optimizer_states") * state_bytes,
                 f"{fmt_count(n)} params x {state_bytes:g} B ({s.optimizer}{dtype})",
                 (states, "bytes-16bit", "bytes-fp32") if halved else (states,))

    def _adapters(self) -> None:
        k, c, s = self.k, self.c, self.s
        self._saved_copies()
        if not c.lora:
            if s.lora_targets:
                self.notes.append(f"no LoRA target matches a linear module: {', '.join(s.lora_targets)}")
            return
        if s.trainer == "deepspeed-zero2":
            ids: tuple[str, ...] = ("deepspeed-zero2-fp16-lora-bytes",)
            per = k[ids[0]]
        else:
            states = k.optimizer_states(s.optimizer)
            ids = ("lora-param-bytes", "grad-bytes-lora", states)
            if s.adapter_dtype == "bf16":
                ids = ("bytes-16bit", "bytes-16bit", states)
            if k.paged(s.optimizer):
                ids = ids[:2]
                self.add_paged(c.lora, states)
            per = sum(k[i] for i in ids)
        # named from what the bytes hold: SGD without momentum keeps no state
        what = "weights, gradients" + (", optimizer" if len(ids) != 2 and k[ids[-1]] else "")
        self.add(f"LoRA adapters ({what})", c.lora * per,
                 f"{fmt_count(c.lora)} params (rank {s.lora_rank}, {', '.join(c.lora_modules)}) x {per:g} B", ids)
        if c.unmatched_targets:
            self.notes.append(f"LoRA targets matching no linear module (no adapter): {', '.join(c.unmatched_targets)}")

    # -- training step ---------------------------------------------------------------------
    def fp32_stream(self) -> bool:
        """After prepare_model_for_kbit_training the residual stream is fp32 and bitsandbytes' layers
        return it in fp32 (rules/memory.yaml kbit-mlp-act-bytes)."""
        s = self.s
        return s.peft != "full" and s.kbit_upcast and s.quantization in _BNB

    def layer_bytes_per_token(self) -> tuple[float, list[str]]:
        """Bytes autograd keeps per token for one decoder layer (no checkpointing)."""
        k, m, c, s = self.k, self.m, self.c, self.s
        e, h = k["bytes-16bit"], m.hidden_size
        q, kv = m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
        norms = max(1, c.norms_per_layer // h)
        used = ["bytes-16bit", "rmsnorm-saved-bytes", "attention-lse-bytes"]
        total = norms * h * k["rmsnorm-saved-bytes"]
        total += e * (q + 2 * kv + q) + k["attention-lse-bytes"] * m.num_heads
        if s.attention == "eager":
            total += k["eager-attention-bytes"] * m.num_heads * s.seq_len
            used.append("eager-attention-bytes")
        top_k = m.experts_per_token if m.is_moe else 1
        width = m.intermediate_size * top_k
        gated = any(mod.mlp in ("gate", "gate_up") for mod in c.modules)
        mlp_e = e
        if self.fp32_stream():
            mlp_e = k["kbit-mlp-act-bytes"]
            used.append("kbit-mlp-act-bytes")
        total += mlp_e * (3 if gated else 2) * width
        if m.is_moe:
            total += e * 2 * h * top_k  # tokens gathered into and scattered out of their experts
        if s.peft == "full":
            # trainable weights: every linear keeps its input, every norm its normalised output
            total += e * (2 * norms * h + q + m.intermediate_size * top_k)
        elif c.lora:
            copy = k["lora-input-copy-bytes"] + (k["dropout-mask-bytes"] if s.lora_dropout > 0 else 0)
            used += ["lora-input-copy-bytes"] + (["dropout-mask-bytes"] if s.lora_dropout > 0 else [])
            for mod in c.modules:
                if mod.kind == "linear" and mod.name.rsplit(".", 1)[-1] in c.lora_modules:
                    # per layer on average: a layer kind's module is in its kind's layers only
                    total += c.held(mod) / c.layers * mod.count * (mod.in_features * copy + s.lora_rank * e)
        return total, used

    def train(self) -> float:
        k, m, c, s = self.k, self.m, self.c, self.s
        e, h = k["bytes-16bit"], m.hidden_size
        spec = s.spec
        sequences = s.micro_batch * (spec.sequences_per_example if spec is not None else 1)
        tokens = sequences * s.local_seq_len
        layer, used = self.layer_bytes_per_token()
        seq_note = f"{sequences} x {s.local_seq_len} tokens" + (f" ({spec.sequences})" if spec is not None and spec.sequences
                                                           else "")
        # What the loss holds: the logits, and under the kbit upcast the 16-bit copy of the fp32 lm_head
        # that autograd keeps for the input gradient (rules/memory.yaml kbit-upcast-bytes, notes).
        logit_id = "grpo-logits-bytes" if spec is not None and spec.generates else c.logits
        logit_tokens = sequences * -(-s.completion_len // s.context_parallel) if s.completion_len else tokens
        logits = logit_tokens * self.outputs * k[logit_id]
        head_copy = self.outputs * h * e if s.peft != "full" and s.kbit_upcast and s.quantization != "none" else 0.0
        loss = logits + head_copy
        kept = tokens * h * k["rmsnorm-saved-bytes"]  # the final norm
        if s.peft != "full" and "lm_head" in c.lora_modules:
            kept += tokens * h * k["lora-input-copy-bytes"]
        if s.gradient_checkpointing:
            boundary = k["kbit-upcast-bytes"] if s.kbit_upcast else e  # fp32 residual stream after the upcast
            kept += tokens * m.num_layers * boundary * h
            recomputed = tokens * layer
            # The loss's backward frees the logits before the last layer is recomputed: one or the other.
            layer_at_peak = recomputed > loss
            detail = (f"{seq_note}; checkpointing: {m.num_layers} layer inputs x {boundary:g} B x {h}"
                      + (f" + one layer recomputed ({layer / 1024:.1f} KiB/token)" if layer_at_peak else ""))
            acts = kept + (recomputed if layer_at_peak else 0.0)
            if layer_at_peak:
                self.notes.append(f"checkpointing: the peak is a recomputed layer ({_gb(recomputed):.2f} GiB); "
                                  f"the loss's logits ({_gb(loss):.2f} GiB) are freed before it")
            else:
                self.notes.append(f"checkpointing: the peak is the loss's backward; the recomputed layer "
                                  f"({_gb(recomputed):.2f} GiB, {layer / 1024:.1f} KiB/token) comes after it")
        else:
            acts = kept + tokens * m.num_layers * layer
            layer_at_peak = False
            detail = f"{seq_note} x {m.num_layers} layers x {layer / 1024:.1f} KiB/token"
        self.add("activations", acts, detail + f", {s.attention} attention", tuple(used), "train")
        if not layer_at_peak:
            which = f"{logit_tokens} completion tokens" if s.completion_len else f"{tokens} tokens"
            self.add("logits and loss", logits, f"{which} x {self.outputs} {'score' if s.score_head else 'vocab'} x "
                     f"{k[logit_id]:g} B",
                     (logit_id,), "train")
            self.add("lm_head 16-bit copy (saved for backward)", head_copy,
                     f"{fmt_count(self.outputs * h)} params x {e:g} B: the fp32 {'score head' if s.score_head else 'lm_head'} "
                     "cast under autocast",
                     ("kbit-upcast-bytes", "bytes-16bit"), "train")
        transient = 0.0
        if s.quantization != "none" and s.peft != "full" and layer_at_peak:
            # a quantized layer dequantizes its weight while it runs: at the peak only when the peak is a layer
            transient = c.largest_linear() * e
            self.add("dequantized weight (transient)", transient,
                     f"the largest quantized layer ({fmt_count(c.largest_linear())} params) in 16-bit", ("bytes-16bit",), "train")
        if s.trainer == "deepspeed-zero2":
            buckets = k["deepspeed-zero2-buckets"]
            transient += buckets
            self.add("DeepSpeed reduce buckets", buckets, "2 x reduce_bucket_size fp16", ("deepspeed-zero2-buckets",),
                     "train")
        return acts + (0.0 if layer_at_peak else loss) + transient

    def step(self) -> float:
        """What optimizer.step() allocates beyond the states, while weights, gradients and states are held."""
        k, c, s = self.k, self.c, self.s
        sid = None if s.trainer == "deepspeed-zero2" else self.k.optimizer_step(s.optimizer)
        if sid is None:
            return 0.0
        if self.offloaded("optimizer"):
            return 0.0  # the step runs on the CPU
        trainable = self.share(c.total, "optimizer_states") if s.peft == "full" else c.lora
        halve = s.pure_bf16 or (s.peft != "full" and s.adapter_dtype == "bf16")  # the buffer has the states' dtype
        per = k[sid] * (k["bytes-16bit"] / k["bytes-fp32"] if halve else 1)
        n_bytes = trainable * per
        detail = f"{fmt_count(trainable)} trainable params x {per:g} B"
        if s.peft != "full" and (saved := sum(self.saved_modules().values())):
            saved_per = k[sid] * self.saved_state_scale()
            n_bytes += saved * saved_per
            detail += f" + {fmt_count(saved)} lora_modules_to_save x {saved_per:g} B"
        self.add("optimizer step buffer", n_bytes, f"{detail} ({s.optimizer}: foreach AdamW's sqrt of the second "
                 "moment)", (sid,), "step")
        return n_bytes

    def generate(self) -> float:
        k, m, s = self.k, self.m, self.s
        if s.spec is None or not s.spec.generates or s.generation_batch <= 0:
            return 0.0
        if s.generator == "vllm-server":
            self.notes.append("completions come from a vLLM server on its own GPUs: no KV cache on this one")
            return 0.0
        if s.generator == "vllm-colocate":
            return 0.0  # vLLM's reservation is a fixed share of the GPU: see colocated_vllm()
        e = k["bytes-16bit"]
        if m.layer_kinds:
            # Layers not all alike (rules/families.yaml `layers`): attention layers cache kv_per_token
            # elements per token (a sliding-window kind only its window's last tokens); linear-attention,
            # SSM and conv layers keep a fixed state per sequence.
            per_token = sum(kind.layers * kind.kv_per_token for kind in m.layer_kinds if not kind.window)
            windowed = [kind for kind in m.layer_kinds if kind.window and kind.kv_per_token]
            per_seq = per_token * s.seq_len + sum(kind.layers * kind.kv_per_token * kind.cached_tokens(s.seq_len)
                                                  for kind in windowed)
            state = sum(kind.layers * kind.state for kind in m.layer_kinds)
            cache = (per_seq + state) * s.generation_batch * e
            cached = sum(kind.layers for kind in m.layer_kinds if kind.kv_per_token and not kind.window)
            detail = (f"({per_token} elements per token ({cached} attention layers) x {s.seq_len} tokens"
                      + "".join(f" + {kind.layers * kind.kv_per_token} per token ({kind.layers} sliding-window "
                                f"layers) x {kind.cached_tokens(s.seq_len)}" for kind in windowed)
                      + f") x {e:g} B x {s.generation_batch} completions"
                      + (f" + a fixed state of {state} elements per completion" if state else ""))
        else:
            # Sliding-window layers keep only their window's last tokens (transformers'
            # DynamicSlidingWindowLayer: window - 1), the other layers every token.
            kept = cached_tokens(s.seq_len, m.sliding_window) if m.sliding_layers else 0
            full = m.num_layers - m.sliding_layers
            cache = 2 * m.num_kv_heads * m.head_dim * e * s.generation_batch * (full * s.seq_len + m.sliding_layers * kept)
            lengths = (f"({full} full layers x {s.seq_len} tokens + {m.sliding_layers} sliding-window layers x {kept})"
                       if m.sliding_layers else f"{s.seq_len} tokens")
            layers = "" if m.sliding_layers else f"{m.num_layers} layers x "
            detail = (f"2 x {layers}{m.num_kv_heads} kv heads x {m.head_dim} x {e:g} B x {s.generation_batch} "
                      f"completions x {lengths}")
        logits = s.generation_batch * m.vocab_size * k["bytes-fp32"]
        self.add("KV cache (generation)", cache, detail, ("bytes-16bit",), "generate")
        self.add("next-token logits (generation)", logits, f"{s.generation_batch} x {m.vocab_size} x fp32",
                 ("bytes-fp32",), "generate")
        return cache + logits


    def colocated_vllm(self, capacity_gb: float | None) -> float:
        """vLLM in this process reserves its share of the GPU (weights and KV cache) up front."""
        s = self.s
        if s.generator != "vllm-colocate":
            return 0.0
        share = s.vllm_share
        ids: tuple[str, ...] = ()
        if not share:
            share, ids = self.k["vllm-colocate-default-share"], ("vllm-colocate-default-share",)
        if capacity_gb is None:
            self.notes.append(f"vLLM colocated in this process reserves {share:g} of the GPU: not counted "
                              "(no GPU known)")
            return 0.0
        n_bytes = share * capacity_gb * GIB
        given = "vllm_gpu_memory_utilization" if s.vllm_share else "TRL's default vllm_gpu_memory_utilization"
        self.add(VLLM_ITEM, n_bytes,
                 f"{given} {share:g} x {capacity_gb:.1f} GiB: outside torch's caching allocator's count", ids, "fixed")
        if not s.vllm_mode_given:
            self.notes.append("use_vllm without vllm_mode: TRL's default, colocate, counted; set vllm_mode: server "
                              "when vLLM runs on GPUs of its own")
        return n_bytes


def estimate(book: Rulebook, job: JobFacts, params: dict[str, Any]) -> Estimate:
    """Predicted peak GPU memory of one training step of ``job`` with ``params``."""
    know = knowledge(book)
    s = setup_from(job, params, book.variants, prompt_tokens=int(know["rl-prompt-tokens"]))
    b = _Builder(know, job, s)
    if s.prompt_assumed:
        b.notes.append(f"each sequence is a {s.prompt_assumed}-token prompt (rl-prompt-tokens: the trainer caps no "
                       f"prompt) plus up to {s.completion_len} completion tokens; give max_prompt_length (--set) for "
                       "your data's prompts")
    b.static()
    static = sum(i.gb for i in b.items if i.phase == "static") * GIB
    paged = sum(i.gb for i in b.items if i.phase == "paged") * GIB
    # Trainers free the gradients after each optimizer step (zero_grad(set_to_none=True)): they are held
    # through the forward / backward pass only while micro-batches accumulate, and at the step always.
    # GRPO generates at the start of an accumulation window, before any gradient exists.
    grads = sum(i.gb for i in b.items if i.phase == "grads") * GIB
    train = b.train() + b.gathered() + (grads if s.accumulation > 1 else 0.0)
    b.cpu_offload()
    gen = b.generate()
    step = b.step() + grads
    if gen > max(train, step):
        b.notes.append("the generation phase (KV cache) is the peak, not the training step")
    elif step > train:
        b.notes.append("optimizer.step() is the peak: weights, gradients, states and the step's buffer, "
                       "after the activations are freed")
    allocated = static + max(train, gen, step)
    overhead = allocated * know["allocator-overhead"]
    b.add("allocator overhead", overhead, f"{know['allocator-overhead']:.0%} of allocated (fragmentation)",
          ("allocator-overhead",), "fixed")
    context = know["cuda-context-gb"] * GIB
    b.add("CUDA context", context, "outside torch's allocator (not in max_memory_reserved)", ("cuda-context-gb",),
          "fixed")
    vllm = b.colocated_vllm(job.gpu.usable_gib)
    reserved = allocated + overhead
    return Estimate(items=tuple(b.items), allocated_gb=_gb(allocated), reserved_gb=_gb(reserved),
                    total_gb=_gb(reserved + paged + context + vllm), setup=s, counts=b.c, notes=tuple(b.notes),
                    paged_gb=_gb(paged))
