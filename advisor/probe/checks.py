"""validate's checks on the plan a probe trains: a toy model's calm curve does not hide a config far outside
the rulebook (an LR 200x above every rule's band, say).

The plan's values (the config's, the flags', the pins' and the recommendation's, as the probe resolved
them) become a TrainingConfig whose keys say where each came from, and the rulebook's `check` rules judge
it with the facts validate uses. Findings keep their own codes and count toward --fail-on.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from advisor.configs.model import ConfigValue, TrainingConfig
from advisor.errors import AdvisorError
from advisor.facts.task import TaskFacts
from advisor.probe.plan import ProbePlan
from advisor.provenance import Source
from advisor.rulebook.check import Finding, run_checks
from advisor.rulebook.load import Rulebook
from advisor.rulebook.resolve import recommend

PLAN_FORMAT = "hf"  # the keys the plan's values are named by (rules/parameters.yaml trainer_keys.hf)


def _plan_config(book: Rulebook, plan: ProbePlan) -> TrainingConfig:
    values: dict[str, ConfigValue] = {}
    trained = {f.metadata["parameter"]: getattr(plan, f.name) for f in fields(plan) if f.metadata.get("parameter")}
    trained.update({"lr_scheduler_type": plan.lr_scheduler_type, "warmup_ratio": plan.warmup_ratio,
                    "max_grad_norm": plan.max_grad_norm, "weight_decay": plan.weight_decay,
                    "lora_dropout": plan.lora_dropout, "lora_target_modules": list(plan.lora_target_modules)})
    trained.update({name: s.value for name, s in plan.settings.items()})
    for name, value in trained.items():
        if name not in book.parameters or value is None or (plan.peft == "full" and name.startswith("lora_")):
            continue
        sourced = plan.sources.get(name) or plan.settings.get(name)
        key = sourced.describe() if sourced is not None else name
        line = sourced.line if sourced is not None and sourced.source is Source.CONFIG else None
        values[name] = ConfigValue(value, key, line)
    path = Path(plan.config_path) if plan.config_path else Path(f"probe of {plan.model.spec}")
    return TrainingConfig(path=path, format=PLAN_FORMAT, values=values)


def plan_findings(book: Rulebook, plan: ProbePlan) -> list[Finding]:
    """The check rules' findings on the values the probe trains with (empty when none fire)."""
    facts: dict[str, Any] = {**plan.gpu.as_facts(), **plan.facts.as_facts()}
    facts.update(TaskFacts(method=plan.method, peft=plan.peft, variant=plan.variant).as_facts())
    facts["task.config_format"] = PLAN_FORMAT
    cfg = _plan_config(book, plan)
    try:
        rec = recommend(book, facts, {}, {})
    except AdvisorError:
        rec = None
    return run_checks(book, cfg, facts, rec, lambda name: name)
