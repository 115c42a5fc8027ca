"""--write-rules: turn a sweep's best learning rate into a user rule that `--rules DIR` layers over
the built-in rulebook (a calibrated LR for this model family and size band, method, adapter and GPU)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from advisor.errors import AdvisorError
from advisor.output import write_atomic
from advisor.rulebook.load import Rulebook


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _free_code(book: Rulebook, rid: str) -> str:
    """The code the rule already has (a re-run replaces it), else the first free CALnnn."""
    if rid in book.rules:
        return book.rules[rid].code
    used = {r.code for r in book.rules.values()}
    for n in range(1, 1000):
        code = f"CAL{n:03d}"
        if code not in used:
            return code
    raise AdvisorError("--write-rules: every code CAL001-CAL999 is taken", hint="merge or delete old calibrations")


PARAMS_B_STEP = 0.001  # not-knowledge: the precision facts/model.py states params_b at (billions)


def calibration_rule(book: Rulebook, *, facts: dict[str, Any], best_lr: float, band: tuple[float, float] | None,
                     random_init: bool, strategy: str, runs: int, steps: int, study: str) -> dict[str, Any]:
    """The rule (as YAML data) that sets learning_rate to the measured best for these facts."""
    family, method, peft = facts["model.family"], facts["task.method"], facts["task.peft"]
    gpu = facts.get("gpu.name")
    size = float(facts["model.params_b"])
    band_x = float(book.coefficient("calibration-size-band"))
    size_lo, size_hi = float(f"{size / band_x:.3g}"), float(f"{size * band_x:.3g}")
    # `between` is half-open, and facts state params_b to a thousandth of a billion: a model that small
    # (a test model rounds to 0.0) still falls inside its own band
    size_hi = max(size_hi, round(size + PARAMS_B_STEP, 3))
    rid = "-".join(["calibrated-lr", _slug(family), _slug(f"{size:g}b"), method, peft,
                    _slug(gpu) if gpu else "no-gpu"])
    # Scoped to what was measured: the family, a size band around the model, the method, the adapter
    # and the GPU (or no GPU: a CPU sweep says nothing about a GPU's batch and precision).
    when: list[dict[str, Any]] = [
        {"fact": "model.family", "op": "eq", "value": family},
        {"fact": "model.params_b", "op": "between", "value": [size_lo, size_hi]},
        {"fact": "task.method", "op": "eq", "value": method},
        {"fact": "task.peft", "op": "eq", "value": peft},
        {"fact": "gpu.name", "op": "eq", "value": gpu} if gpu else {"fact": "gpu.name", "op": "missing"},
    ]
    scope = (f"{method} {peft} on {family} models of {size_lo:g}B to {size_hi:g}B parameters "
             f"(measured: {size:g}B), " + (f"on {gpu}" if gpu else "with no GPU named (measured without one)"))
    # The calibrated value replaces every refine-stage LR rule; interactions (adjust) still apply on top.
    overrides = sorted(r.id for r in book.rules_for("learning_rate") if r.stage == "refine" and r.id != rid)
    lo, hi = band if band else (best_lr, best_lr)
    what = "a random-init model (--random-init)" if random_init else f"{facts.get('model.name', family)}"
    rule: dict[str, Any] = {
        "id": rid,
        "code": "",  # write_rule_file picks a free one against the directory it writes to
        "kind": "recommend",
        "stage": "refine",
        "parameter": "learning_rate",
        "summary": f"Calibrated by advisor sweep: {scope}",
        "why": f"Measured: the lowest final eval loss of a {strategy} sweep ({runs} runs, {steps} steps each) "
               f"on {what}.",
        "source": {"derived": f"advisor sweep, study {study!r}, {date.today().isoformat()}"},
        "confidence": "theoretical" if random_init else "medium",
        "when": {"all": when},
        "default": float(f"{best_lr:.3g}"),
        "range": [float(f"{min(lo, best_lr):.3g}"), float(f"{max(hi, best_lr):.3g}")],
        "notes": [{
            "text": "A short probe with one seed on one data set; the interaction rules still adjust this value "
                    "for rank, batch and dataset size. Re-run the sweep when the data or the model changes.",
            "source": {"derived": "advisor sweep"},
        }],
    }
    if overrides:
        rule["overrides"] = overrides
    if random_init:
        rule["notes"].append({
            "text": "Measured on random weights: the LR that suits an untrained network says little about "
                    "fine-tuning a pretrained one. Use it to test the pipeline, not for a real run.",
            "source": {"derived": "advisor sweep --random-init"},
        })
    return rule


def capped(directory: Path, facts: dict[str, Any]) -> list[str]:
    """What recommend will say about the calibrated value for the facts it was measured on: a later
    rule (a constraint) that caps it, so the calibration would have no effect."""
    from advisor.rulebook.load import load_rulebook
    from advisor.rulebook.resolve import recommend

    rec = recommend(load_rulebook([directory]), facts, {})
    return [w for w in rec.warnings if "the calibrated value" in w]


def write_rule_file(directory: Path, rule: dict[str, Any]) -> Path:
    """Write (or replace) DIR/<rule id>.yaml and check that DIR still loads over the built-in rules."""
    from advisor.rulebook.load import load_rulebook

    if directory.exists() and not directory.is_dir():
        raise AdvisorError(f"--write-rules {directory}: not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    present = any(directory.glob("*.y*ml"))
    rule = {**rule, "code": _free_code(load_rulebook([directory]) if present else load_rulebook(), rule["id"])}
    path = directory / f"{rule['id']}.yaml"
    doc = {"family": "calibration",
           "description": "Learning rates measured by advisor sweep; layer with --rules " + str(directory),
           "rules": [rule]}
    text = "# Written by `advisor sweep --write-rules`; edit freely (same id replaces the rule).\n"
    text += yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    previous = path.read_text(encoding="utf-8") if path.exists() else None
    write_atomic(path, text)
    try:
        load_rulebook([directory])
    except AdvisorError:
        if previous is None:
            path.resolve().unlink()  # a link written through stays, its new target goes
        else:
            write_atomic(path, previous)
        raise
    return path
