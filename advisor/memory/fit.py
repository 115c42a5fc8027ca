"""What fits: the largest micro-batch under the safety margin, the memory facts the rules read,
and, when nothing fits, what would (each alternative checked by re-running the estimate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from advisor.facts.hardware import registry_usable_gib
from advisor.facts.job import JobFacts
from advisor.facts.task import TaskFacts
from advisor.memory.estimate import Estimate, estimate
from advisor.memory.knowledge import knowledge
from advisor.rulebook import conditions as cond
from advisor.rulebook.formula import MissingFact
from advisor.rulebook.load import Rulebook

# How an alternative's changes are written for the reader: {"peft": "qlora", "gradient_checkpointing": True,
# "max_seq_length": 1024, "gpu": "h100", "gpus": 8, "sharding": "zero3", "offload": [...]} -> the words in ( ).
Spell = Callable[[dict[str, Any]], str]


def cli_words(changes: dict[str, Any]) -> str:
    """An alternative as the flags of `advisor recommend` / `memory` (a parameter without a flag: --set)."""
    from advisor.facts.catalogue import FLAG_PARAMETERS

    flag_of = {param: flag for flag, param in FLAG_PARAMETERS.items()}
    words = []
    for name, value in changes.items():
        shown = ",".join(value) if isinstance(value, (list, tuple)) else str(value).lower() if isinstance(value, bool) \
            else value
        if name in ("peft", "gpu", "gpus") or name in flag_of:
            words.append(f"{flag_of.get(name, f'--{name}')} {shown}")
        else:
            words.append(f"--set {name}={shown}")
    return " ".join(words)


@dataclass(frozen=True)
class Fit:
    capacity_gib: float  # the GPU as it reports itself (gpu.usable_gib)
    usable_gb: float  # GiB: capacity less the safety margin
    margin: float
    max_micro_batch: int  # 0: not even 1 fits
    at_one: Estimate
    alternatives: list[str] = field(default_factory=list)
    # None: checkpointing is on already, or micro-batch 1 fits without it
    checkpointing_fits: bool | None = None
    # the longest halving of the sequence (down to fit-min-seq-len) at which micro-batch 1 fits; None when
    # micro-batch 1 fits, none does, or the length is the user's (rule seq-len-fits-gpu reads it)
    fitting_seq_len: int | None = None

    @property
    def fits(self) -> bool:
        return self.max_micro_batch >= 1

    def facts(self) -> dict[str, Any]:
        return {
            "memory.max_micro_batch": self.max_micro_batch, "memory.fits": self.fits,
            "memory.peak_gb_batch1": round(self.at_one.total_gb, 2), "memory.usable_gb": round(self.usable_gb, 2),
            "memory.seq_len": self.at_one.setup.seq_len,
            "memory.alternatives": "; ".join(self.alternatives) or None,
            "memory.checkpointing_fits": self.checkpointing_fits,
            "memory.fitting_seq_len": self.fitting_seq_len,
        }


def _with(params: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**params, **changes}


def max_micro_batch(book: Rulebook, job: JobFacts, params: dict[str, Any], usable_gb: float, cap: int) -> int:
    """The largest power of two (up to ``cap``) whose estimate fits ``usable_gb``; 0 when 1 does not."""
    best, b = 0, 1
    while b <= cap:
        if estimate(book, job, _with(params, micro_batch_size=b)).total_gb > usable_gb:
            break
        best, b = b, b * 2
    return best


def shorter_fitting(book: Rulebook, job: JobFacts, one: dict[str, Any], usable: float,
                    shortest: int) -> tuple[int, float] | None:
    """The longest halving of ``one``'s sequence, down to ``shortest`` tokens, at which ``one`` (micro-batch 1)
    fits ``usable`` GiB, with its peak; None when none does."""
    s = int(one.get("max_seq_length") or job.task.seq_len or 0) // 2
    while s >= shortest:
        g = estimate(book, job, _with(one, max_seq_length=s)).total_gb
        if g <= usable:
            return s, g
        s //= 2
    return None


def fit(book: Rulebook, job: JobFacts, params: dict[str, Any], cap: int | None = None,
        spell: Spell = cli_words, shorten: bool = False) -> Fit | None:
    """None when the GPU's memory is unknown. ``spell`` writes each alternative's changes (validate: config keys);
    ``shorten``: the sequence length is advisor's to choose, so the fit says which shorter one fits
    (fitting_seq_len)."""
    capacity = job.gpu.usable_gib
    if capacity is None:
        return None
    know = knowledge(book)
    margin = know["safety-margin"]
    usable = capacity * (1 - margin)
    limit = int(know["max-micro-batch"]) if cap is None else max(1, min(cap, int(know["max-micro-batch"])))
    at_one = estimate(book, job, _with(params, micro_batch_size=1))
    best = max_micro_batch(book, job, params, usable, limit) if at_one.total_gb <= usable else 0
    checkpointing_fits = None
    if not best and not params.get("gradient_checkpointing"):
        checkpointed = estimate(book, job, _with(params, micro_batch_size=1, gradient_checkpointing=True))
        checkpointing_fits = checkpointed.total_gb <= usable
    shorter = None
    if shorten and not best:
        found = shorter_fitting(book, job, _with(params, micro_batch_size=1), usable, int(know["fit-min-seq-len"]))
        shorter = found[0] if found else None
    result = Fit(capacity, usable, margin, best, at_one, checkpointing_fits=checkpointing_fits,
                 fitting_seq_len=shorter)
    if not result.fits:
        result.alternatives.extend(alternatives(book, job, params, usable, spell))
    return result


# how the lines a user reads name each --peft value
PEFT_NAMES = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tuning"}

# gradient_checkpointing too: QLoRA "instead of lora" must not also switch on checkpointing the config has off
CARRIED = ("max_prompt_length", "max_completion_length", "use_vllm", "vllm_mode", "vllm_gpu_memory_utilization",
           "attention", "trainer", "pure_bf16", "gradient_checkpointing")


def _job(job: JobFacts, **task: Any) -> JobFacts:
    return replace(job, task=TaskFacts(**{**job.task.__dict__, **task}))


def alternatives(book: Rulebook, job: JobFacts, params: dict[str, Any], usable: float,
                 spell: Spell = cli_words) -> list[str]:
    """What would fit micro-batch 1, each checked by the estimate (never guessed), and none of them
    the flags the job already has: a sharding stage over the GPUs given, CPU offload, the number of
    GPUs of this kind that fits, another adapter, checkpointing, a shorter sequence, a bigger GPU."""
    know = knowledge(book)
    one = _with(params, micro_batch_size=1)
    out: list[str] = []

    def peak(j: JobFacts, p: dict[str, Any]) -> float:
        return estimate(book, j, p).total_gb

    out.extend(sharded(book, job, one, usable, spell))
    peft = job.task.peft
    # What the user set beyond the rulebook's parameters (vLLM, prompt / completion caps, attention)
    # stays with an alternative adapter, whose own rule parameters are resolved afresh.
    kept = {k: one[k] for k in CARRIED if one.get(k) is not None}
    # LoRA to QLoRA keeps the adapter as it is (rank, alpha, targets, modules saved): only the base's precision
    # changes, so what "--peft qlora" would run is this adapter on 4-bit weights
    same = {} if peft == "full" else {k: v for k, v in one.items() if v is not None
                                      and getattr(book.parameters.get(k), "group", None) == "lora"}
    for other in ("lora", "qlora"):
        if (peft, other) in (("full", "lora"), ("full", "qlora"), ("lora", "qlora")):
            j = _job(job, peft=other)
            p = _with(rule_params(book, j, {"max_seq_length": one.get("max_seq_length"), **same}), micro_batch_size=1,
                      **kept)
            g = peak(j, p)
            name = PEFT_NAMES[other]
            if g <= usable:
                out.append(f"{name} instead of {peft}: {g:.1f} GiB ({spell({'peft': other})})")
                break
            if not p.get("gradient_checkpointing"):  # the config has it off: both changes together
                g = peak(j, _with(p, gradient_checkpointing=True))
                if g <= usable:
                    out.append(f"{name} with gradient checkpointing instead of {peft}: {g:.1f} GiB "
                               f"({spell({'peft': other, 'gradient_checkpointing': True})})")
                    break
    if not params.get("gradient_checkpointing"):
        g = peak(job, _with(one, gradient_checkpointing=True))
        if g <= usable:
            out.append(f"gradient checkpointing: {g:.1f} GiB ({spell({'gradient_checkpointing': True})})")
    found = shorter_fitting(book, job, one, usable, int(know["min-seq-len-suggestion"]))
    if found:
        out.append(f"a shorter sequence: {found[0]} tokens, {found[1]:.1f} GiB ({spell({'max_seq_length': found[0]})})")
    margin = know["safety-margin"]
    # The recommended config trains in bf16 wherever the GPU has it: a bigger GPU without bf16
    # (a V100) would change the precision, so it is named only to a job already without bf16.
    keeps_bf16 = job.gpu.bf16 is not False
    have = job.gpu.usable_gib or job.gpu.memory_gb or 0.0
    for gpu in sorted((g for g in know.gpus.values() if registry_usable_gib(g) > have
                       and (g.get("bf16") or not keeps_bf16)), key=registry_usable_gib):
        # Re-estimated on that GPU: what scales with the GPU (a colocated vLLM's share) moves with it.
        on = replace(job.gpu, name=gpu["id"], memory_gb=float(gpu["memory_gb"]), bf16=bool(gpu["bf16"]),
                     usable_gib=registry_usable_gib(gpu))
        need = peak(replace(job, gpu=on), one)
        if need <= registry_usable_gib(gpu) * (1 - margin):
            out.append(f"a bigger GPU: {gpu['name']} ({gpu['memory_gb']:g} GB, {registry_usable_gib(gpu):.1f} GiB "
                       f"usable) holds {need:.1f} GiB ({spell({'gpu': gpu['id']})})")
            break
    return out


def _changed(now: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """What an alternative changes beyond what the job already has (GPUs, sharding, offload)."""
    return {name: changes[name] for name in ("gpus", "sharding", "offload")
            if changes.get(name) is not None and changes[name] != now.get(name)}


def sharded(book: Rulebook, job: JobFacts, one: dict[str, Any], usable: float, spell: Spell = cli_words) -> list[str]:
    """A sharding stage over the GPUs given, CPU offload, and the GPUs of this kind that fit."""
    from advisor.memory.estimate import sharding_of
    from advisor.registries import strategies

    know = knowledge(book)
    now = {"gpus": job.gpu.processes, **sharding_of(one)}
    per = job.gpu.model_parallel  # --gpus counts every GPU; the estimate's count is the data-parallel ones
    order = list(strategies())
    current = order.index(now["sharding"])
    gpu_name = str((know.gpus.get(job.gpu.name or "") or {}).get("name") or job.gpu.name or "GPU")
    out: list[str] = []

    def on(n: int, sharding: str, offload: tuple[str, ...] = ()) -> Any:
        j = replace(job, gpu=job.gpu.data_parallel(n))
        return estimate(book, j, _with(one, sharding=sharding, offload=list(offload)))

    def at(n: int, sharding: str, offload: tuple[str, ...] = ()) -> float:
        return float(on(n, sharding, offload).total_gb)

    def name(sid: str) -> str:
        return strategies()[sid].name.split(" (")[0]

    # ZeRO stages in order, over the GPUs given (FSDP full shard divides as ZeRO-3 does)
    zero = [sid for sid in ("zero1", "zero2", "zero3") if order.index(sid) > current]
    stage_fits = False
    if job.gpu.count > 1:
        for sid in zero:
            g = at(job.gpu.count, sid, now["offload"])
            if g <= usable:
                out.append(f"{name(sid)} over your {job.gpu.processes} GPUs: {g:.1f} GiB per GPU "
                           f"({spell(_changed(now, {'sharding': sid}))})")
                stage_fits = True
                break
    stage = now["sharding"] if strategies()[now["sharding"]].divides("parameters") else "zero3"
    if not out:
        for offload in (("optimizer",), ("optimizer", "parameters")):
            if set(offload) <= set(now["offload"]):
                continue
            est = estimate(book, job, _with(one, sharding=stage, offload=list(offload)))
            if est.total_gb <= usable:
                cpu = sum(i.gb for i in est.items if i.phase == "cpu")
                # what the estimate offloaded: FSDP moves every target when asked for one
                out.append(f"{name(stage)} with {' and '.join(est.setup.offload)} offload: {est.total_gb:.1f} GiB per GPU, "
                           f"{cpu:.0f} GiB CPU RAM per node "
                           f"({spell(_changed(now, {'sharding': stage, 'offload': list(offload)}))})")
                break
    n = max(2, job.gpu.count * 2)
    while not stage_fits and n <= int(know["max-gpus-suggestion"]):  # more GPUs: when no stage fits those given
        g = at(n, stage, now["offload"])
        if g <= usable:
            changes = spell(_changed(now, {"gpus": n * per, "sharding": stage}))
            out.append(f"{name(stage)} on {n * per} x {gpu_name}: {g:.1f} GiB each ({changes})"
                       + (_unsharded(on(n, stage, now["offload"]), on(2 * n, stage, now["offload"]))
                          if n > int(know["gpus-per-node"]) else ""))
            break
        n *= 2
    return out


def _unsharded(here: Any, doubled: Any) -> str:
    """Past one node, when most of each GPU's memory is what more GPUs cannot shrink (the items no smaller at twice the GPUs:
    a long sequence's logits and activations, the gathered layer), those items: they, not the sharded states,
    are why so many GPUs are needed, and what to change instead."""
    twice = {i.name: i.gb for i in doubled.items}
    kept = sorted((i for i in here.items if i.phase != "cpu" and twice.get(i.name, 0.0) >= i.gb), key=lambda i: -i.gb)
    total = sum(i.gb for i in kept)
    if total <= here.total_gb / 2:
        return ""
    return (f"; {total:.1f} GiB of it stays on each GPU at any count ("
            + ", ".join(f"{i.name} {i.gb:.1f}" for i in kept[:3]) + ")")


def rule_params(book: Rulebook, job: JobFacts, pins: dict[str, Any]) -> dict[str, Any]:
    """The parameters the rulebook alone gives ``job`` (for an alternative such as another adapter)."""
    from advisor.rulebook.resolve import recommend

    rec = recommend(book, job.flat(), {}, {k: v for k, v in pins.items() if v is not None})
    return {name: pv.value for name, pv in rec.parameters.items()}


def cross_check(book: Rulebook, facts: dict[str, Any], table_batch: int | None, model_batch: int) -> str | None:
    """A note when the seed table's micro-batch and the memory model's differ by more than the ratio."""
    know = knowledge(book)
    rule = know.cross_check
    if not rule or table_batch is None or model_batch < 1:
        return None
    try:
        if not cond.holds(cond.parse(rule.get("when")), lambda n: _fact(facts, n),
                          f"{rule.get('_file', 'rules/memory.yaml')}: cross_check (rule {rule['rule']!r})"):
            return None
    except MissingFact:
        return None
    ratio = know["cross-check-ratio"]
    if max(table_batch, model_batch) <= ratio * min(table_batch, model_batch):
        return None
    code = book.rules[rule["rule"]].code
    return (f"the seed's batch table ({code} {rule['rule']}) gives micro-batch {table_batch}, the memory model "
            f"{model_batch}: they differ by more than {ratio:g}x (the table assumes an 8B LoRA model at a moderate "
            f"sequence length; the memory model counts this model, method and sequence length)")


def _fact(facts: dict[str, Any], name: str) -> Any:
    if facts.get(name) is None:
        raise MissingFact(name)
    return facts[name]
