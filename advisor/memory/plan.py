"""The memory model inside `recommend`: resolve, size the micro-batch, resolve again with the
memory facts, and report the predicted peak, the headroom and what to change when nothing fits."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from advisor.errors import AdvisorError
from advisor.facts.job import JobFacts
from advisor.memory.estimate import QUANTIZING, Estimate, estimate
from advisor.memory.fit import PEFT_NAMES, Fit, Spell, cli_words, cross_check, fit
from advisor.memory.knowledge import knowledge
from advisor.output import fmt_gib
from advisor.provenance import Source
from advisor.recommendation import MemoryItem, MemoryReport, Provenance, Recommendation
from advisor.rulebook.load import Rulebook
from advisor.rulebook.resolve import recommend as resolve


def values(rec: Recommendation) -> dict[str, Any]:
    return {name: pv.value for name, pv in rec.parameters.items()}


def report(est: Estimate, f: Fit | None) -> MemoryReport:
    items = [MemoryItem(name=i.name, gb=round(i.gb, 2), detail=i.detail, sources=list(i.sources),
                        phase=i.phase) for i in est.items]  # type: ignore[arg-type]
    s = est.setup
    split = s.completion_len and s.seq_len > s.completion_len
    out = MemoryReport(micro_batch=s.micro_batch, seq_len=s.seq_len, total_gb=round(est.total_gb, 2),
                       prompt_len=s.seq_len - s.completion_len if split else None,
                       reserved_gb=round(est.reserved_gb, 2), items=items, notes=list(est.notes),
                       parallel=parallel(est))
    if f is not None:
        out.gpu_gb, out.usable_gb, out.safety_margin = round(f.capacity_gib, 3), round(f.usable_gb, 2), f.margin
        out.headroom_gb = round(f.capacity_gib - est.total_gb, 2)
        out.fits, out.max_micro_batch = est.total_gb <= f.usable_gb, f.max_micro_batch
        out.alternatives = list(f.alternatives)
    return out


def parallel(est: Estimate) -> str | None:
    """'8 GPUs, data parallel (DDP: a full replica each)' / '8 GPUs, ZeRO stage 3, optimizer offload' /
    '8 GPUs (2 data parallel x tensor 2 x context 2), FSDP full shard': what the per-GPU total assumes (None
    on one GPU without sharding)."""
    s = est.setup
    mesh = [f"{name} {n}" for name, n in (("tensor", s.tensor_parallel), ("context", s.context_parallel)) if n > 1]
    gpus = f"{s.gpus} GPU{'s' if s.gpus > 1 else ''}" + (f": {s.world_size} data parallel x {' x '.join(mesh)}"
                                                         if mesh else "")
    if s.sharding == "none":
        if mesh:
            return f"{gpus}, no sharding"
        return f"{gpus}, data parallel (DDP: a full replica each)" if s.world_size > 1 else None
    offload = f", {' and '.join(s.offload)} offloaded to CPU RAM" if s.offload else ""
    return f"{gpus}, {s.strategy.name.split(' (')[0]}{offload}"


def _largest(est: Estimate, n: int = 3) -> str:  # not-knowledge: how many items a message names
    top = sorted(est.items, key=lambda i: -i.gb)[:n]
    return ", ".join(f"{i.name} {i.gb:.1f}" for i in top)


def recommend_with_memory(book: Rulebook, job: JobFacts, pins: dict[str, Any],
                          knobs: dict[str, Any] | None = None, peft_free: bool = False) -> Recommendation:
    """``knobs``: the memory model's own settings (attention, quantization, trainer, ...), not parameters.
    ``peft_free``: the user gave no --peft, so when the default adapter does not fit the GPU, the one
    rules/memory.yaml's fit_to_gpu names takes its place, if that is what makes the job fit."""
    rec, first = _sized(book, job, pins, knobs)
    swap = knowledge(book).fit_to_gpu.get("peft", {}).get(job.task.peft) if peft_free else None
    if first is None or first.fits or swap is None or rec.memory is None:
        return rec
    other, other_first = _sized(book, replace(job, task=replace(job.task, peft=swap)), pins, knobs)
    assert other.memory is not None and other_first is not None  # the same GPU: sized as the default was
    # The default adapter stays when the other would not fit either, or fits only at the same shortened length.
    if not other.memory.fits or (rec.memory.fits and rec.memory.seq_len >= other.memory.seq_len):
        return rec
    asked = job.task.peft
    was, now = PEFT_NAMES.get(asked, asked), PEFT_NAMES.get(swap, swap)
    other.adapted.insert(0, (
        f"{now} instead of {was} (no --peft given): {was} needs {fmt_gib(first.at_one.total_gb, first.usable_gb)} GiB "
        f"at micro-batch 1 x {first.at_one.setup.seq_len} tokens, above the "
        f"{fmt_gib(first.usable_gb, first.at_one.total_gb)} GiB left under the "
        f"{first.margin:.0%} safety margin; {now} needs {fmt_gib(other_first.at_one.total_gb)} GiB there "
        f"(rules/memory.yaml fit_to_gpu; --peft {asked} keeps {was})"))
    return other


def _sized(book: Rulebook, job: JobFacts, pins: dict[str, Any],
           knobs: dict[str, Any] | None) -> tuple[Recommendation, Fit | None]:
    """The recommendation sized by the memory model, and the fit of the job as the rules first gave it
    (None: no sequence length or no GPU known)."""
    facts, sources = job.flat(), job.report()
    first = resolve(book, facts, sources, pins)
    params = {**values(first), **(knobs or {})}
    if not params.get("max_seq_length"):
        return first, None
    # The memory model sizes the micro-batch by memory alone; the effective batch's share of one GPU
    # is a separate limit (BAT004), reported beside it, never as what memory holds.
    effective = params.get("effective_batch_size")
    share = max(1, int(effective) // max(1, job.gpu.count)) if effective else None
    f = fit(book, job, params, shorten="max_seq_length" not in pins)
    if f is None:  # no GPU known: the peak at micro-batch 1, for information
        est = estimate(book, job, {**params, "micro_batch_size": params.get("micro_batch_size", 1)})
        first.memory = report(est, None)
        return first, None
    at_rules = f
    rec = resolve(book, {**facts, **f.facts()}, sources, pins)
    final = {**values(rec), **(knobs or {})}
    if f.fitting_seq_len and final.get("max_seq_length") != params["max_seq_length"]:
        # CTX004 shortened the sequence: the micro-batch is sized again at the new length, and the rule
        # keeps reading the length the rules' own one called for
        f = fit(book, job, final)
        assert f is not None  # the same GPU
        rec = resolve(book, {**facts, **f.facts(), "memory.fitting_seq_len": at_rules.fitting_seq_len}, sources, pins)
        final = {**values(rec), **(knobs or {})}
        sized = at_rules.at_one.setup
        # a completion-capped method's max_seq_length caps its completions, and the prompt comes on top
        capped = sized.spec is not None and sized.spec.completion_cap
        tokens = " tokens" if sized.seq_len == params["max_seq_length"] else f" ({sized.seq_len} tokens with the prompt)"
        rec.adapted.append(
            f"max_seq_length {params['max_seq_length']} -> {final['max_seq_length']} (CTX004 seq-len-fits-gpu, no "
            f"--seq-len given): at {params['max_seq_length']}{tokens} micro-batch 1 needs "
            f"{fmt_gib(at_rules.at_one.total_gb, at_rules.usable_gb)} GiB, above the "
            f"{fmt_gib(at_rules.usable_gb, at_rules.at_one.total_gb)} GiB left under the "
            f"{at_rules.margin:.0%} safety margin; "
            + ("completions stop at the shorter cap" if capped else "longer examples are cut")
            + " (--seq-len keeps a length)")
    est = estimate(book, job, final)
    rec.memory = report(est, f)
    rec.memory.batch_share = share
    micro = final.get("micro_batch_size", 1)
    if not f.fits:
        what = "; ".join(f.alternatives) or "nothing advisor checked (QLoRA, checkpointing, shorter sequences, " \
                                            "bigger GPUs, sharding, offload, more GPUs)"
        rec.warnings.append(
            f"does not fit: at micro-batch 1 the predicted peak is {fmt_gib(f.at_one.total_gb, f.usable_gb)} GiB, above the "
            f"{fmt_gib(f.usable_gb, f.at_one.total_gb)} GiB left under the {f.margin:.0%} safety margin of the "
            f"{f.capacity_gib:.1f} GiB GPU ({_largest(f.at_one)} GiB). What would fit: {what}")
    elif est.total_gb > f.usable_gb:  # the figure itself, so a warning never calls a smaller one "above"
        rec.warnings.append(
            f"micro_batch_size={micro} is predicted to need {fmt_gib(est.total_gb, f.usable_gb)} GiB, above the "
            f"{fmt_gib(f.usable_gb, est.total_gb)} GiB "
            f"left under the {f.margin:.0%} safety margin of the {f.capacity_gib:.1f} GiB GPU; "
            f"{f.max_micro_batch} fits")
    table = first.parameters.get("micro_batch_size")
    if table is not None and table.set_by == "rule" and f.fits:
        # the memory model's own figure, not the micro-batch the effective batch's divisor then chose
        # A note beside the memory figures, not a warning: the memory model's micro-batch is the one used, and
        # at the default 4096 tokens it differs from the 8B table on most large GPUs, so a warning is noise.
        diff = cross_check(book, facts, int(table.value), f.max_micro_batch)  # type: ignore[arg-type]
        if diff:
            rec.memory.notes.append(diff)
    return rec, at_rules


def config_facts(book: Rulebook, job: JobFacts, rec: Recommendation, config: dict[str, Any],
                 spell: Spell = cli_words) -> dict[str, Any]:
    """memory.* facts for a config being validated: its own values over the recommendation's, and what would fit
    written by ``spell`` (validate: in the config's own keys)."""
    params = {**values(rec), **{k: v for k, v in config.items() if v is not None}}
    if job.task.peft == "full":
        # Quantized full fine-tuning is refused by the trainers (VQT001 reports it): the checks size the job
        # VQT001 expects, full fine-tuning in 16-bit, so their alternatives say which fix fits
        params = {k: v for k, v in params.items() if k not in QUANTIZING}
    if isinstance(params.get("lora_target_modules"), str):
        params["lora_target_modules"] = [params["lora_target_modules"]]
    try:
        f = fit(book, job, params, spell=spell)
        if f is None:
            return {}
        out = f.facts()
        out["memory.peak_gb"] = round(estimate(book, job, params).total_gb, 2)
    except (AdvisorError, TypeError, ValueError):
        return {}  # a value the model cannot read (the readers reject bad values and choices themselves)
    return out


# the recommendation's settings the memory estimate depends on
SHOWN_SETTINGS = ("lora_rank", "lora_target_modules", "gradient_checkpointing", "load_in_4bit", "optimizer",
                  "gradient_accumulation_steps", "sharding", "offload")


class MemoryAnswer:
    """What `advisor memory` answers: the itemised estimate inside its recommendation, and the settings it assumed."""

    def __init__(self, rec: Recommendation, method: str, peft: str, pins: dict[str, Any]) -> None:
        from advisor.memory.fit import CARRIED

        if rec.memory is None:
            raise AdvisorError("memory: the rulebook gave no sequence length", hint="give --seq-len")
        self.rec, self.memory, self.method, self.peft = rec, rec.memory, method, peft
        self.settings: dict[str, Any] = {k: rec.parameters[k].value for k in SHOWN_SETTINGS if k in rec.parameters}
        self.settings.update({k: pins[k] for k in CARRIED if k in pins})  # the memory settings given beyond the rules

    def as_dict(self) -> dict[str, Any]:
        m, g = self.rec.facts["model"], self.rec.facts["gpu"]
        return {"model": m["name"], "method": self.method, "peft": self.peft,
                "gpu": {k: g.get(k) for k in ("name", "memory_gb", "usable_gib", "count")},
                "parameters": self.settings, "provenance": self.provenance(), **self.memory.to_dict(),
                "adapted": self.rec.adapted, "warnings": self.rec.warnings}

    def provenance(self) -> dict[str, dict[str, str]]:
        """Where each setting came from: the recommendation's provenance, or a pin the memory model reads."""
        out = {}
        for name in self.settings:
            pv = self.rec.parameters.get(name)
            out[name] = (pv.provenance if pv is not None else Provenance(source=Source.PIN.value, detail="--set")).to_dict()
        return out
