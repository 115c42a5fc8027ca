"""`advisor sweep --write-rules` (issue 16): the calibration rule is scoped to what was measured
(family, a size band, method, adapter, GPU) and says so; a rule that caps it is reported by
recommend and at write time."""

from __future__ import annotations

from pathlib import Path

import pytest

from advisor.facts.job import job_facts
from advisor.rulebook import load_rulebook
from advisor.rulebook.resolve import recommend
from advisor.sweep.calibrate import calibration_rule, capped, write_rule_file

CAP = """family: team
description: A team cap on the learning rate.
rules:
  - id: team-lr-cap
    code: TEAM900
    kind: constrain
    parameter: learning_rate
    summary: Our LR ceiling
    source: {doc: "team wiki"}
    confidence: medium
    max: 1.0e-3
"""


def _facts(model: str, gpu: str | None = "h100") -> dict[str, object]:
    book = load_rulebook()
    return job_facts(book, model=model, method="sft", peft="lora", gpu=gpu, detect_gpu=False).flat()


def _written(tmp_path: Path, facts: dict[str, object], lr: float = 5e-3) -> Path:
    rule = calibration_rule(load_rulebook(), facts=facts, best_lr=lr, band=(lr / 2, lr * 2), random_init=False,
                            strategy="grid", runs=4, steps=30, study="s")
    directory = tmp_path / "rules"
    write_rule_file(directory, rule)
    return directory


def test_the_rule_applies_only_to_the_measured_family_size_and_gpu(tmp_path: Path) -> None:
    facts = _facts("llama-8b")
    directory = _written(tmp_path, facts)
    book = load_rulebook([directory])
    rule = next(r for r in book.rules.values() if r.family == "calibration")
    assert "llama models of 4.01B to 16.1B parameters (measured: 8.03B), on h100" in rule.summary
    assert recommend(book, facts, {}).parameters["learning_rate"].rule == rule.id
    for other in (_facts("llama-70b"), _facts("llama-8b", gpu="a100-80gb"), _facts("llama-8b", gpu=None)):
        assert recommend(book, other, {}).parameters["learning_rate"].rule != rule.id


def test_a_cpu_sweep_is_scoped_to_no_gpu(tmp_path: Path) -> None:
    facts = _facts("llama-8b", gpu=None)
    book = load_rulebook([_written(tmp_path, facts)])
    rule = next(r for r in book.rules.values() if r.family == "calibration")
    assert "with no GPU named" in rule.summary
    assert recommend(book, facts, {}).parameters["learning_rate"].rule == rule.id
    assert recommend(book, _facts("llama-8b"), {}).parameters["learning_rate"].rule != rule.id


def test_a_cap_on_the_calibrated_value_is_said_by_recommend_and_at_write_time(tmp_path: Path) -> None:
    facts = _facts("llama-8b")
    directory = _written(tmp_path, facts)
    assert capped(directory, facts) == []
    (directory / "team.yaml").write_text(CAP)
    rec = recommend(load_rulebook([directory]), facts, {})
    assert rec.parameters["learning_rate"].value == pytest.approx(1e-3)
    said = [w for w in rec.warnings if "calibrated value" in w]
    assert said and "5e-3" in said[0] and "TEAM900 team-lr-cap" in said[0] and "no effect" in said[0]
    assert capped(directory, facts) == said


def test_a_refused_rule_written_through_a_link_is_taken_back_and_the_link_kept(tmp_path: Path) -> None:
    from advisor.errors import RuleFileError

    rule = calibration_rule(load_rulebook(), facts=_facts("llama-8b"), best_lr=5e-3, band=(2.5e-3, 1e-2),
                            random_init=False, strategy="grid", runs=4, steps=30, study="s")
    directory = tmp_path / "rules"
    directory.mkdir()
    link = directory / f"{rule['id']}.yaml"
    link.symlink_to(tmp_path / "kept.yaml")  # dangling into an existing directory: written through
    with pytest.raises(RuleFileError, match="not allowed"):
        write_rule_file(directory, {**rule, "unknown_key": 1})
    assert link.is_symlink() and not (tmp_path / "kept.yaml").exists()
