"""The probe of a method TRL trains: TRL's own trainer runs the probe's steps, a callback records them.

Which trainer is the method registry's (rules/registry/methods.yaml `trl`): DPO's DPOTrainer, GRPO's
GRPOTrainer, and any method whose trainer takes the same data (KTOTrainer: unpaired completions;
RLOOTrainer: prompts and reward functions). A trainer the installed TRL does not have (PPOTrainer is
in neither ``trl`` nor ``trl.experimental`` in TRL 1.16) leaves the method to the probe's own
language-modelling step, and the report says so.

What runs is the real step: DPO's loss on chosen / rejected pairs at the config's beta and loss type,
against the reference TRL builds (the adapter-disabled base for LoRA / QLoRA, a frozen copy for full
fine-tuning); GRPO's G completions per prompt sampled with HF generation (vLLM when the config asks
for it and it is installed) at the config's temperature and completion cap, scored by reward
functions, with group-relative advantages, the KL term when beta > 0 and the config's loss type.
The optimizer and LR schedule are the probe's own (the full run's first steps, as the LM probe
trains), handed to the trainer before it starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from advisor import registries
from advisor.facts.task import variant_of
from advisor.probe.data import _rows_jsonl, check_fields
from advisor.probe.measure import MemoryMeter, is_oom
from advisor.probe.plan import ProbeInputError, ProbePlan, load_reward
from advisor.probe.result import ProbeResult, StepRecord
from advisor.safeio import clip, clip_path

DATA = Path(__file__).resolve().parent / "data"
PREFERENCES = DATA / "preferences.jsonl"  # built-in pairs (data/PROVENANCE.md)
RL_PROMPTS = DATA / "rl_prompts.jsonl"  # built-in prompts with a target answer (data/PROVENANCE.md)
PAIRED = ("DPOTrainer", "CPOTrainer", "ORPOTrainer", "RewardTrainer")  # trainers of prompt / chosen / rejected rows
UNPAIRED = ("KTOTrainer",)  # prompt / completion / label rows
ONLINE = ("GRPOTrainer", "RLOOTrainer")  # prompts and reward functions; completions sampled in the step
DRIVEN = (*PAIRED, *UNPAIRED, *ONLINE)  # the trainers the probe drives
# the fields each kind of trainer reads from a --data record (KTO's unpaired rows are made from the pairs)
NEEDS = {"paired": ("prompt", "chosen", "rejected"), "unpaired": ("prompt", "chosen", "rejected"), "online": ("prompt",)}
OUTPUT_LAYER = "lm_head"  # the module name TRL's trainers refuse an adapter on (transformers' causal-LM head)
SAMPLES_KEPT = 64  # not-knowledge: completions kept for the report (distinct-n reads them all)


@dataclass(frozen=True)
class TrlSpec:
    """The TRL trainer that trains a plan: its variant's (rules/variants.yaml `trl`) where it has one, else its
    method's (rules/registry/methods.yaml `trl`)."""

    trainer: str
    config: str
    variant: str | None = None  # the variant whose own trainer this is; None: the method's trainer
    loss_type: str | None = None  # the variant's loss in that trainer; None: TRL's default
    settings: tuple[tuple[str, Any], ...] = ()  # config fields the variant fixes (SimPO: cpo_alpha 0)
    model: str = ""  # the transformers Auto class the trainer takes ("": the causal LM)
    model_kwargs: tuple[tuple[str, Any], ...] = ()  # what it is built with (a reward model: num_labels 1)
    peft_task: str = "CAUSAL_LM"  # peft's task_type for the adapter


def trl_spec(plan: ProbePlan) -> TrlSpec | None:
    """The plan's TRL trainer and config names, or None: its method names none."""
    if plan.variant is not None:
        from advisor.rulebook.load import load_rulebook

        own = load_rulebook().variants.get(plan.variant, {}).get("trl")
        if own:
            return TrlSpec(trainer=own["trainer"], config=own["config"], variant=plan.variant,
                           loss_type=own.get("loss_type"), settings=tuple((own.get("settings") or {}).items()))
    spec = registries.method(plan.method)
    if spec is None or not spec.trl_trainer:
        return None
    return TrlSpec(trainer=spec.trl_trainer, config=spec.trl_config, model=spec.trl_model,
                   model_kwargs=tuple(spec.trl_model_kwargs.items()), peft_task=spec.peft_task)


def data_kind(spec: TrlSpec) -> str:
    """The kind of rows a TRL trainer takes: paired, unpaired or online (the keys of NEEDS)."""
    return "paired" if spec.trainer in PAIRED else "unpaired" if spec.trainer in UNPAIRED else "online"


def needed_fields(plan: ProbePlan) -> tuple[str, ...] | None:
    """The fields the plan's TRL trainer reads from each --data record; None: the probe's own LM step trains it
    (any record shape). Decided from the registries alone, so it holds before TRL is imported."""
    spec = trl_spec(plan)
    return None if spec is None or spec.trainer not in DRIVEN else NEEDS[data_kind(spec)]


def trainer_classes(plan: ProbePlan) -> tuple[Any, Any, str] | None:
    """(trainer class, config class, "trl.X version") for the plan, or None: no TRL trainer of a kind the probe
    drives, or the installed TRL lacks it (``trl``, then ``trl.experimental.<name>``)."""
    spec = trl_spec(plan)
    if spec is None or spec.trainer not in DRIVEN:
        return None
    import trl

    top = trl.__name__
    for where in (top, f"{top}.experimental.{spec.trainer.removesuffix('Trainer').lower()}"):
        if where != top and importlib.util.find_spec(where) is None:
            continue
        module = importlib.import_module(where)
        trainer, config = getattr(module, spec.trainer, None), getattr(module, spec.config, None)
        if trainer is not None and config is not None:
            return trainer, config, f"{where}.{spec.trainer} {trl.__version__}"
    return None


def missing_trainer_note(plan: ProbePlan) -> str | None:
    """Why a method whose registry entry names a TRL trainer is probed as its LM step (None: it is not)."""
    spec = trl_spec(plan)
    if spec is None or spec.trainer == "SFTTrainer":
        return None
    import trl

    method = registries.method(plan.method)
    whose = f"the variant {spec.variant}" if spec.variant or method is None else method.name
    return (f"TRL {trl.__version__} has no {spec.trainer} (neither trl nor trl.experimental): {whose} is "
            "probed as the policy's language-modelling step")


def loss_types(config_cls: Any) -> set[str]:
    """The loss types the installed TRL config documents (its loss_type field's help: "'sigmoid', 'ipo', ...")."""
    for f in fields(config_cls):
        if f.name == "loss_type":  # TRL's newer configs list them as the field's choices
            named = set(re.findall(r"'([a-z][a-z0-9_]*)'", str(f.metadata.get("help", ""))))
            return named | {str(c) for c in f.metadata.get("choices", ())}
    return set()


def _loss_type(plan: ProbePlan, spec: TrlSpec, config_cls: Any, notes: list[str]) -> str | None:
    """The config's loss type, else the variant's (rules/variants.yaml loss_types) that TRL has; None: TRL's default.
    A variant with its own trainer trains that trainer's loss for it: the config's loss key named the variant."""
    if spec.variant is not None:
        return spec.loss_type
    accepted = loss_types(config_cls)
    given = plan.settings.get("loss_type")
    from advisor.rulebook.load import load_rulebook

    variants = load_rulebook().variants
    if given is not None:
        value = str(given.value).lower()
        names_variant = plan.variant is not None and variant_of(variants, plan.method, value) == plan.variant
        if accepted and value not in accepted and not names_variant:
            raise ProbeInputError(f"loss_type: {value!r} ({given.describe()}) is not a loss type of TRL's "
                                  f"{config_cls.__name__}", hint=f"one of {', '.join(sorted(accepted))}")
        if not accepted or value in accepted:
            return value  # else another trainer's name for the variant (open-instruct's dpo_norm): TRL's own below
    if plan.variant is None:
        return None
    names = [str(t).lower() for t in variants.get(plan.variant, {}).get("loss_types", ())]
    for name in [plan.variant, *names]:
        if name in accepted:
            return name
    if plan.variant == plan.method and not names:
        return None  # the method's own loss, which is the trainer's (RewardTrainer's Bradley-Terry loss)
    notes.append(f"TRL's {config_cls.__name__} has no loss for the variant {plan.variant} (its loss types: "
                 f"{', '.join(sorted(accepted))}): probed with TRL's default loss")
    return None


def _dataset(plan: ProbePlan, kind: str) -> tuple[Any, str]:
    """The training rows the trainer takes, and where they came from."""
    import datasets
    from datasets import Dataset

    datasets.disable_progress_bars()

    builtin = RL_PROMPTS if kind == "online" else PREFERENCES
    path = Path(plan.data.path) if plan.data.path is not None else builtin
    rows = check_fields(path, _rows_jsonl(path), NEEDS[kind], plan.method)
    if kind == "unpaired":  # KTO: each pair gives a desirable and an undesirable completion
        rows = [r for row in rows for r in ({"prompt": row["prompt"], "completion": row["chosen"], "label": True},
                                            {"prompt": row["prompt"], "completion": row["rejected"], "label": False})]
    where = "built-in " + ("prompt set" if kind == "online" else "preference pairs") if path == builtin else str(path)
    return Dataset.from_list(rows), f"{where} ({len(rows)} rows; data/PROVENANCE.md)" if path == builtin else where


# --- built-in verifiable rewards: they vary within a group even for a random-init model -------------------

def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def target_token_reward(prompts: list[Any], completions: list[Any], target: list[str] | None = None,
                        **_: Any) -> list[float]:
    """The share of the target answer's words the completion contains."""
    out = []
    for i, completion in enumerate(completions):
        want = set(_words(target[i])) if target else set()
        got = set(_words(_text(completion)))
        out.append(len(want & got) / len(want) if want else 0.0)
    return out


def length_reward(prompts: list[Any], completions: list[Any], target: list[str] | None = None,
                  **_: Any) -> list[float]:
    """1 at the target answer's length in words, falling linearly to 0 at twice (or zero) that length."""
    out = []
    for i, completion in enumerate(completions):
        want = len(_words(target[i])) if target else 1
        out.append(max(0.0, 1.0 - abs(len(_words(_text(completion))) - want) / max(1, want)))
    return out


def format_reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    """1 when the completion is one sentence: it ends with a full stop and holds no other."""
    out = []
    for completion in completions:
        text = _text(completion).strip()
        out.append(1.0 if text.endswith(".") and text.count(".") == 1 else 0.0)
    return out


BUILTIN_REWARDS = (target_token_reward, length_reward, format_reward)


def _longest_prompt(tokenizer: Any, prompts: list[Any]) -> int | None:
    """The longest prompt in tokens, as the trainer feeds it: text as it is, a message list through the chat
    template with the generation prompt (TRL's GRPOTrainer); None when there is no prompt or no template."""
    lengths = []
    for prompt in prompts:
        if isinstance(prompt, list):
            try:
                ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
            except (ValueError, TypeError, KeyError):  # a tokenizer without a chat template
                return None
            # transformers 5 returns a BatchEncoding (a Mapping, not a dict) where 4.x returned the ids
            lengths.append(len(ids["input_ids"] if isinstance(ids, Mapping) else ids))
        else:
            lengths.append(len(tokenizer(str(prompt))["input_ids"]))
    return max(lengths, default=None)


def _text(completion: Any) -> str:
    if isinstance(completion, list):  # conversational: a list of messages
        return " ".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


class _Recorder:
    """Wraps the reward functions: each call's completions and total rewards become the report's samples."""

    def __init__(self, funcs: list[Callable[..., Any]], result: ProbeResult, state: dict[str, int],
                 user: str | None = None) -> None:
        self.funcs, self.result, self.state = funcs, result, state
        self.user = user  # the --reward spec when funcs is the user's function: its failure is their input's error

    def wrapped(self) -> list[Callable[..., Any]]:
        out: list[Callable[..., Any]] = []
        for i, fn in enumerate(self.funcs):
            def call(prompts: list[Any], completions: list[Any], _fn: Callable[..., Any] = fn, _i: int = i,
                     **kwargs: Any) -> list[float]:
                values = self._call(_fn, prompts, completions, kwargs)
                if _i == 0:
                    self._keep(prompts, completions, values)
                else:
                    self._add(values)
                return values
            call.__name__ = getattr(fn, "__name__", f"reward_{i}")
            out.append(call)
        return out

    def _call(self, fn: Callable[..., Any], prompts: list[Any], completions: list[Any],
              kwargs: dict[str, Any]) -> list[Any]:
        if self.user is None:
            return list(fn(prompts=prompts, completions=completions, **kwargs))
        hint = "TRL's reward signature: fn(prompts, completions, **columns) -> one float (or None) per completion"
        try:
            values = fn(prompts=prompts, completions=completions, **kwargs)
        except Exception as exc:
            raise ProbeInputError(f"--reward {self.user}: raised {type(exc).__name__}: {clip_path(exc)}", hint=hint) from exc
        if (not isinstance(values, (list, tuple)) or len(values) != len(completions)
                or any(v is not None and _num(v) is None for v in values)):
            raise ProbeInputError(f"--reward {self.user}: returned {clip(values)} for {len(completions)} "
                                  "completions, not one finite number (or None) each", hint=hint)
        return list(values)

    def _keep(self, prompts: list[Any], completions: list[Any], values: list[Any]) -> None:
        step = self.state["step"] + 1
        self.pending = [{"step": step, "prompt": _text(p), "completion": _text(c), "reward": _num(v)}
                        for p, c, v in zip(prompts, completions, values, strict=False)]
        self.result.samples.extend(self.pending)

    def _add(self, values: list[Any]) -> None:
        for sample, v in zip(self.pending, values, strict=False):
            got, add = sample["reward"], _num(v)
            if isinstance(got, float) and add is not None:
                sample["reward"] = got + add


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _config(plan: ProbePlan, spec: TrlSpec, config_cls: Any, kind: str, device: str, prec: Any, out_dir: str,
            notes: list[str]) -> Any:
    names = {f.name for f in fields(config_cls)}
    kwargs: dict[str, Any] = {}
    for name, sourced in plan.settings.items():  # the method's knobs, by their TRL key
        key = next((k for k in plan.setting_keys.get(name, (name,)) if k in names), None)
        if key is not None and sourced.value is not None:
            kwargs[key] = sourced.value
    if kwargs.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        kwargs["use_vllm"] = False
        notes.append("the config asks for vLLM generation, which is not installed: completions were generated "
                     "with HF generate (slower; generation memory is HF's KV cache, not vLLM's reserved share)")
    elif kwargs.get("use_vllm") and device != "cuda":
        kwargs["use_vllm"] = False
        notes.append("the config asks for vLLM generation, which needs CUDA: HF generate ran on the CPU")
    kwargs.pop("loss_type", None)
    loss = _loss_type(plan, spec, config_cls, notes)
    if loss is not None and "loss_type" in names:
        kwargs["loss_type"] = loss
    kwargs.update((k, v) for k, v in spec.settings if k in names)
    micro, accum = plan.micro_batch_size, plan.gradient_accumulation_steps
    if kind == "online":
        groups = int(kwargs.get("num_generations") or 0)
        if groups and (micro * accum) % groups:
            accum = math.ceil(groups * math.ceil(micro * accum / groups) / micro)
            notes.append(f"{micro} x {plan.gradient_accumulation_steps} completions per step is no whole number of "
                         f"groups of {groups}: accumulation raised to {accum}")
    if "max_length" in names:
        kwargs["max_length"] = plan.seq_len
    if kind == "online" and "max_completion_length" in names:
        _cap_completions(plan, config_cls, kwargs, notes)
    kwargs.update(
        output_dir=out_dir, report_to="none", save_strategy="no", logging_steps=1, max_steps=plan.steps,
        per_device_train_batch_size=micro, gradient_accumulation_steps=accum, learning_rate=plan.learning_rate,
        weight_decay=plan.weight_decay, max_grad_norm=plan.max_grad_norm if plan.max_grad_norm is not None else 0.0,
        seed=plan.seed, data_seed=plan.seed, use_cpu=device != "cuda", disable_tqdm=True, dataloader_num_workers=0,
        gradient_checkpointing=plan.gradient_checkpointing and plan.peft != "qlora",  # QLoRA: prepared already
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=prec.label == "bf16", fp16=prec.fp16_scaler,
    )
    if "eval_strategy" in names:
        kwargs["eval_strategy"] = "no"
    return config_cls(**kwargs), micro, accum


def _cap_completions(plan: ProbePlan, config_cls: Any, kwargs: dict[str, Any], notes: list[str]) -> None:
    """An online trainer's sequences are the prompt plus up to max_completion_length sampled tokens (TRL 1.16 has no
    max_length to bound them). With no cap of its own the job samples up to its sequence length, as advisor's
    trainer files write it and its memory model sizes it (not TRL's default); a cap above the sequence length is
    lowered to it. So the probe samples, times and measures sequences of the length it reports and predicts."""
    default = next(f.default for f in fields(config_cls) if f.name == "max_completion_length")
    seq = plan.sources.get("max_seq_length")
    if "max_completion_length" not in kwargs:
        kwargs["max_completion_length"] = plan.seq_len
        if default != plan.seq_len:
            notes.append(f"max_completion_length {plan.seq_len}: the probe's sequence length"
                         + (f" ({seq.describe()})" if seq is not None else "")
                         + f", as advisor's trainer files write it and its memory model sizes it ({config_cls.__name__}'s "
                         f"default is {default}; the prompt comes on top)")
        return
    cap = kwargs["max_completion_length"]
    if not isinstance(cap, int) or cap <= plan.seq_len:
        return
    kwargs["max_completion_length"] = plan.seq_len
    given = plan.settings.get("max_completion_length")
    whose = given.describe() if given is not None else "the config"
    notes.append(f"max_completion_length {cap} ({whose}) is above the probe's sequence length {plan.seq_len}"
                 + (f" ({seq.describe()})" if seq is not None else "") + f": completions were capped at {plan.seq_len} "
                 "tokens (the prompt comes on top)")


def run_trl(plan: ProbePlan, classes: tuple[Any, Any, str], result: ProbeResult, device: str, meter: MemoryMeter,
            on_step: Callable[[StepRecord], None] | None, lr_lambda: Callable[[int], float] | None,
            save_adapter: str | None) -> None:
    """Train ``plan.steps`` steps with TRL's trainer; the steps, TRL's logs and the samples go into ``result``."""
    from advisor.probe.loop import _optimizer, _scheduler
    from advisor.probe.model import build_unwrapped, lora_config

    trainer_cls, config_cls, name = classes
    spec = trl_spec(plan)
    assert spec is not None
    kind = data_kind(spec)
    result.trainer = name
    started = time.perf_counter()
    built = build_unwrapped(plan, device, spec.model, dict(spec.model_kwargs))
    result.model_notes[:] = built.notes
    result.precision, result.tokenizer = built.precision.label, built.codec.name
    result.load_time_s = time.perf_counter() - started
    dataset, described = _dataset(plan, kind)
    notes: list[str] = []
    if kind == "online":
        # TRL caps no prompt: the memory prediction counts the data's longest one, not rl-prompt-tokens
        result.prompt_tokens = _longest_prompt(built.codec.hf_tokenizer(), dataset["prompt"])
    state = {"step": 0}
    with tempfile.TemporaryDirectory(prefix="advisor-probe-trl-") as out_dir:
        args, micro, accum = _config(plan, spec, config_cls, kind, device, built.precision, out_dir, notes)
        result.micro_batch_size, result.gradient_accumulation_steps = micro, accum
        extra: dict[str, Any] = {}
        if kind == "online":
            funcs = [load_reward(plan.reward)] if plan.reward else list(BUILTIN_REWARDS)
            extra["reward_funcs"] = _Recorder(funcs, result, state, plan.reward).wrapped()
            rewards = plan.reward or ", ".join(f.__name__ for f in BUILTIN_REWARDS) + " (built-in)"
            notes.append(f"rewards: {rewards}; completions sampled with "
                         + ("vLLM" if getattr(args, "use_vllm", False) else "HF generate"))
        if spec.variant is not None:
            notes.append(f"the variant {spec.variant} trains its own loss through TRL's {spec.trainer} "
                         f"(rules/variants.yaml)" + (f", loss_type {spec.loss_type}" if spec.loss_type else "")
                         + "".join(f", {k} {v}" for k, v in spec.settings))
        callback = _callback(_Steps(plan, result, meter, on_step, state))
        exclude = tuple(t for t in plan.lora_target_modules if t == OUTPUT_LAYER)
        if exclude and plan.peft != "full" and spec.model:
            notes.append(f"a {spec.model} has no {OUTPUT_LAYER} (a score head replaces it): the probe trains the "
                         "other target modules")
        elif exclude and plan.peft != "full":
            notes.append(f"TRL refuses a LoRA adapter on {OUTPUT_LAYER} (its trainers read the log-probabilities from "
                         f"{OUTPUT_LAYER}.weight directly, trl/trainer/dpo_trainer.py and grpo_trainer.py): the probe "
                         "trains the other target modules")
        trainer = trainer_cls(model=built.model, args=args, train_dataset=dataset,
                              processing_class=built.codec.hf_tokenizer(),
                              peft_config=lora_config(plan, exclude, spec.peft_task),
                              callbacks=[callback], **extra)
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        for printer in (PrinterCallback, ProgressCallback):  # the probe has its own live view
            trainer.remove_callback(printer)
        model = trainer.model
        params = [p for p in model.parameters() if p.requires_grad]
        result.trainable_params = sum(p.numel() for p in params)
        result.total_params = sum(p.numel() for p in model.parameters())
        # The probe's optimizer and schedule (the full run's first steps), not the trainer's own over max_steps.
        trainer.optimizer = _optimizer(plan, params, device, result.model_notes)
        trainer.lr_scheduler = _scheduler(plan, trainer.optimizer, lr_lambda)
        result.data_notes[:] = [described, *notes]
        try:
            trainer.train()
        except Exception as exc:
            if not is_oom(exc):
                raise
            result.status = "no_fit"
            result.stop_reason = (f"out of memory in {name} at micro-batch {micro} (the micro-batch search runs on "
                                  "the LM-step probe only): give a smaller --micro-batch")
        finally:
            if result.logs and not any("num_tokens" in row for row in result.logs):
                result.data_notes.append(f"TRL's {spec.trainer} logs no token count (num_tokens): tokens/s is not "
                                         "measured, the step time is")
            state_file = Path(out_dir) / "trainer_state.json"
            trainer.state.save_to_json(str(state_file))  # what a user's run writes, for `advisor diagnose`
            result.trainer_state = json.loads(state_file.read_text())
            if save_adapter is not None and result.status == "completed":
                trainer.model.save_pretrained(save_adapter)
            del trainer, model, params
            built.model = None
            meter.release()


class _Steps:
    """Each optimizer step's time and peak memory (the meter) and TRL's log row become a StepRecord
    (the TrainerCallback methods; ``_callback`` makes it one without importing transformers at import time)."""

    def __init__(self, plan: ProbePlan, result: ProbeResult, meter: MemoryMeter,
                 on_step: Callable[[StepRecord], None] | None, state: dict[str, int]) -> None:
        self.plan, self.result, self.meter, self.on_step, self.state = plan, result, meter, on_step, state
        self.started = 0.0
        self.peak = (0.0, 0.0)
        self.elapsed = 0.0
        self.tokens_seen = 0.0
        self.lr = plan.learning_rate

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.meter.start_step()
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:
            self.lr = float(optimizer.param_groups[0]["lr"])  # the LR this step trains at
        self.started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.peak = self.meter.end_step()
        self.elapsed = time.perf_counter() - self.started
        self.meter.check(self.peak[1])
        self.state["step"] = int(state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return  # the end-of-training summary row
        row = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
        self.result.logs.append({"step": int(state.global_step), **row})
        seen = float(row.get("num_tokens", self.tokens_seen))
        tokens = int(max(0.0, seen - self.tokens_seen))
        self.tokens_seen = seen
        norm = float(row.get("grad_norm", math.nan))
        clip = self.plan.max_grad_norm
        rec = StepRecord(step=int(state.global_step), loss=float(row["loss"]), grad_norm=norm,
                         clipped=clip is not None and norm > clip, learning_rate=self.lr, tokens=tokens,
                         tokens_per_s=tokens / self.elapsed if self.elapsed > 0 else 0.0, step_time_s=self.elapsed,
                         peak_allocated_gb=self.peak[0], peak_reserved_gb=self.peak[1])
        self.result.steps.append(rec)
        if self.on_step is not None:
            self.on_step(rec)


def _callback(steps: _Steps) -> Any:
    from transformers import TrainerCallback

    class Callback(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            steps.on_step_begin(args, state, control, **kwargs)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            steps.on_step_end(args, state, control, **kwargs)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            steps.on_log(args, state, control, logs=logs, **kwargs)

    return Callback()
