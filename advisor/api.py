"""The library entry point: the same path the CLI takes, for tests and for Python callers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from advisor.facts.catalogue import FLAG_PARAMETERS
from advisor.facts.job import job_facts
from advisor.facts.mesh import DeviceMesh
from advisor.provenance import Source
from advisor.recommendation import Provenance, Recommendation
from advisor.rulebook.load import Rulebook, load_rulebook


def recommend(
    *,
    rule_dirs: Iterable[Path] = (),
    book: Rulebook | None = None,
    pins: dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
    memory_knobs: dict[str, Any] | None = None,
    launch: Any = None,
    **facts: Any,
) -> Recommendation:
    """Recommend a config. ``facts`` are job_facts' keywords; ``pins`` are --set values; ``flags``
    the command-line flags that pin a parameter (facts/catalogue.py FLAG_PARAMETERS), which win
    over --set (provenance.PRECEDENCE); ``memory_knobs`` the memory model's own settings (attention);
    ``launch`` an accelerate launch config read by advisor.configs.sharding (a TrainingConfig): its
    sharding, offload and world size, below the flags."""
    book = book if book is not None else load_rulebook(rule_dirs)
    # no --peft: LoRA, or the adapter rules/memory.yaml fit_to_gpu names when LoRA does not fit the GPU
    peft_free = facts.get("peft") is None
    facts = {k: v for k, v in facts.items() if not (k == "peft" and v is None)}
    from_launch = {} if launch is None else {name: cv for name, cv in launch.values.items()
                                             if name in book.parameters and name != "world_size"}
    world = launch.values.get("world_size") if launch is not None and facts.get("gpus") is None else None
    if world is not None:
        facts["gpus"] = world.value
    job = job_facts(book, **facts)
    if world is not None:
        job = replace(job, gpu=replace(job.gpu, source=f"{job.gpu.source}; count: {launch.path.name} {world.key}"))
    given = {**({"--seq-len": job.task.seq_len} if job.task.seq_len is not None else {}), **(flags or {})}
    given = {flag: value for flag, value in given.items() if value is not None}
    asked, pins = pins or {}, _completion_cap_pin(job.task.method, pins or {})
    all_pins = {**{name: cv.value for name, cv in from_launch.items()}, **pins,
                **{FLAG_PARAMETERS[flag]: value for flag, value in given.items()}}
    from advisor.memory.plan import recommend_with_memory

    whole = job = _on_mesh(job, all_pins, counted=facts.get("gpus") is not None)
    # --gpus counts every GPU; pinned tensor / context parallel sizes leave fewer training on different data
    job = replace(job, gpu=job.gpu.model_parallel_over(DeviceMesh.of(all_pins).model_parallel))
    rec = recommend_with_memory(book, job, all_pins, memory_knobs, peft_free=peft_free)
    for name, cv in from_launch.items():
        pv = rec.parameters.get(name)
        if pv is not None and name not in (pins or {}):
            pv.provenance = Provenance(source=Source.CONFIG.value, detail=f"{launch.path.name}: {cv.key}")
    for flag in given:
        pv = rec.parameters.get(FLAG_PARAMETERS[flag])
        if pv is not None:
            pv.provenance = Provenance(source=Source.FLAG.value, detail=flag)
    capped = rec.parameters.get("max_seq_length")
    if (COMPLETION_PIN in asked and COMPLETION_PIN not in pins and capped is not None
            and capped.provenance.source == Source.PIN.value):
        capped.provenance = Provenance(source=Source.PIN.value, detail=f"--set {COMPLETION_PIN}")
    rec.warnings[:0] = job.task.unused_flags()
    if pins:
        rec.warnings.extend(pin_findings(book, rec, whole, pins))  # validate splits the GPUs by the mesh itself
    return rec


def _on_mesh(job: Any, pins: dict[str, Any], *, counted: bool) -> Any:
    """The job on the GPUs a pinned device mesh (--set tensor_parallel_size=2, ...) takes: with no --gpus (or
    launch config) the least it runs on, as validate reads a file's mesh; a count it does not divide is the
    usage error Axolotl stops with (rules/config.yaml VCF015)."""
    from advisor.errors import AdvisorError

    mesh = DeviceMesh.of(pins)
    if not mesh.stated:
        return job
    if not counted:
        return replace(job, gpu=replace(job.gpu, count=mesh.size, count_assumed=False,
                                        source=f"{job.gpu.source}; count: the least its device mesh runs on: "
                                               f"{mesh.words()}"))
    if not mesh.runs_on(job.gpu.count):
        raise AdvisorError(f"--gpus {job.gpu.count}: the device mesh {mesh.words()} does not lay out over "
                           f"{job.gpu.count} GPUs",
                           hint="a --gpus the mesh divides (exactly its size when dp_shard_size and dp_replicate_size "
                                "are both set), or other --set sizes")
    return job


COMPLETION_PIN = "max_completion_length"


def _completion_cap_pin(method_id: str | None, pins: dict[str, Any]) -> dict[str, Any]:
    """The pins with a completion-capped method's (GRPO's) --set max_completion_length as its max_seq_length: the
    job's max_seq_length is what its file writes as max_completion_length (rules/registry/methods.yaml
    completion_cap), so the two are one value, and a pin of either sets it."""
    from advisor.errors import AdvisorError
    from advisor.registries import method

    spec = method(method_id)
    if spec is None or not spec.completion_cap or COMPLETION_PIN not in pins:
        return dict(pins)
    cap, seq = pins[COMPLETION_PIN], pins.get("max_seq_length")
    if seq is not None and seq != cap:
        raise AdvisorError(f"--set {COMPLETION_PIN}={cap} and max_seq_length={seq}: {spec.name}'s max_seq_length is "
                           f"the completion cap its file writes as {COMPLETION_PIN}, so they are one value",
                           hint="give one of them; the prompt's cap is max_prompt_length")
    return {**{k: v for k, v in pins.items() if k != COMPLETION_PIN}, "max_seq_length": cap}


def pin_findings(book: Rulebook, rec: Recommendation, job: Any, pins: dict[str, Any]) -> list[str]:
    """What `advisor validate` would say of a --set value, said when it is set: the recommendation read back as
    the file it writes, and the checks' findings on the pinned parameters (a group of 3, temperature 1.5, no
    gradient clipping), so a pin outside the rules is not first heard of from validate."""
    from advisor.render.data import to_yaml
    from advisor.validate import Overrides, Selection, validate_file

    report = validate_file(Path("recommendation.yaml"), book, job.gpu,
                           Overrides(cycles=job.task.cycles, gpus=job.gpu.count), Selection(), text=to_yaml(rec))
    return [f"{f.parameter} {pins[f.parameter]} (set by you): {f.code} {f.severity}: {f.message}"
            for f in report.findings if f.parameter in pins and f.severity in ("warning", "error")
            and not f.code.startswith("VSQ")]  # the memory model already says whether the job fits


def memory(*, book: Rulebook, pins: dict[str, Any] | None = None, attention: str = "sdpa",
           micro_batch: int | None = None, flags: dict[str, Any] | None = None, **facts: Any) -> Any:
    """`advisor memory`: the recommendation's memory estimate, itemised (an advisor.memory.plan.MemoryAnswer)."""
    from advisor.errors import AdvisorError
    from advisor.memory.estimate import ATTENTIONS
    from advisor.memory.plan import MemoryAnswer
    from advisor.registries import check_flag
    from advisor.suggest import one_of

    if attention not in ATTENTIONS:
        raise AdvisorError(f"--attention: unknown value {attention!r}", hint=one_of(attention, ATTENTIONS))
    check_flag("--micro-batch", micro_batch)
    given = {"--micro-batch": micro_batch, **(flags or {})}
    rec = recommend(book=book, pins=pins, flags=given, memory_knobs={"attention": attention}, **facts)
    shown = {**(pins or {}), **{FLAG_PARAMETERS[f]: v for f, v in given.items() if v is not None}}
    return MemoryAnswer(rec, facts["method"], str(rec.facts["task"]["peft"]), shown)
