"""Machine formats of a Recommendation: JSON (schemas/recommendation.schema.json) and
advisor's own training-config YAML (what `advisor validate` reads back)."""

from __future__ import annotations

import json

from advisor import __version__
from advisor.output import yaml_scalar
from advisor.recommendation import ParameterValue, Recommendation, span

YAML_FORMAT_VERSION = 1


def to_json(rec: Recommendation) -> str:
    return json.dumps(rec.to_dict(), indent=2) + "\n"


def header_lines(warnings: list[str], adapted: list[str]) -> list[str]:
    """A written file's comments for what does not fit and what was changed so that the job fits, one line each."""
    return ([f"# WARNING: {' '.join(w.split())}" for w in warnings]
            + [f"# ADAPTED: {' '.join(a.split())}" for a in adapted])


def to_yaml(rec: Recommendation) -> str:
    model = rec.facts.get("model", {})
    task = rec.facts.get("task", {})
    lines = [
        f"# advisor {__version__} recommendation: every value below is a hypothesis from advisor's rulebook,",
        "# with the rule (code and id), the matching row and its confidence after it.",
        "# `advisor recommend ... --explain` prints each value's full trace and sources.",
        # the memory verdict a value's comment points to ("see the memory warning"), as the trainer formats write it
        *header_lines(rec.warnings, rec.adapted),
        f"advisor_format: {YAML_FORMAT_VERSION}",
        f"model: {yaml_scalar(model.get('pretrained') or model.get('hf_id') or model.get('name'))}",
        f"method: {task.get('method')}",
        f"peft: {task.get('peft')}",
        "training:",
    ]
    variant = task.get("variant")
    if variant and variant != task.get("method"):  # the loss the values are for: validate reads it back (SimPO's beta)
        lines.insert(-1, f"variant: {variant}")
    for name, pv in rec.parameters.items():
        lines.append(f"  {name}: {yaml_scalar(pv.value)}  # {value_comment(pv)}")
    gpus = rec.gpus()
    if gpus > 1 and "world_size" not in rec.parameters:  # validate sizes the file on them, as --gpus would
        lines.append(f"  world_size: {gpus}  # the data-parallel GPUs the batch was sized for (--gpus)")
    return "\n".join(lines) + "\n"


def value_comment(pv: ParameterValue) -> str:
    """The rule, the matching row and the confidence behind a value, for a YAML comment."""
    if pv.set_by == "user":
        return "set by you"
    step = next((s for s in reversed(pv.trace) if s.stage in ("base", "refine", "derive")), None)
    row = f" · {step.case}" if step and step.case else ""
    # an adjustment or constraint after the row that changed the value: else the comment names the row's
    # value (CTX001's 4096) beside another one (512)
    later = pv.trace[pv.trace.index(step) + 1:] if step is not None else []
    movers = [s.code for s in later if s.stage in ("adjust", "constrain") and s.code and s.before != s.after]
    moved = f" · moved by {', '.join(dict.fromkeys(movers))}" if movers else ""
    comment = f"{pv.code} {pv.rule}{row}{moved} · {pv.confidence}"
    if pv.range_moved():
        comment += f" · range {span(pv.range or [])} ({pv.range_note(short=True)})"
    return comment
