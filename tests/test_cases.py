"""One parametrised test over every YAML fixture in tests/cases/ (sqlfluff-style).

Each case gives job facts and, per parameter, what the rulebook must produce: the value, the
rule that set it, the matching table row, its range (and the row's own range, when adjustments
or constraints moved it) and confidence, or that it is absent; the warnings the job gives; and what
advisor changed so that the job fits the GPU (``adapted``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor import api
from advisor.rulebook.load import Rulebook

CASES_DIR = Path(__file__).parent / "cases"
FACT_KEYS = {"model", "method", "peft", "gpu", "gpu_mem", "gpus", "dataset_size", "seq_len", "cycles",
             "use_case", "situation", "sft_lr", "variant"}
EXPECT_KEYS = {"value", "rule", "case", "range", "range_contains", "rule_range", "outside", "confidence", "absent",
               "set_by", "rules", "step", "overridden", "set_aside"}
CASE_KEYS = {"name", "facts", "set", "expect", "warns", "memory_notes", "adapted"}


def _collect() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for case in doc["cases"]:
            params.append(pytest.param(case, id=f"{path.stem}::{case['name']}"))
    return params


def _close(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        return math.isclose(float(actual), float(expected), rel_tol=1e-9, abs_tol=0.0)
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            _close(a, e) for a, e in zip(actual, expected, strict=True))
    return bool(actual == expected)


@pytest.mark.parametrize("case", _collect())
def test_case(case: dict[str, Any], book: Rulebook) -> None:
    facts = dict(case["facts"])
    if (CASES_DIR / facts["model"]).is_file():  # a config.json kept beside the cases
        facts["model"] = str(CASES_DIR / facts["model"])
    assert set(case) <= CASE_KEYS, f"unknown case keys {set(case) - CASE_KEYS}"
    assert set(facts) <= FACT_KEYS, f"unknown fact keys {set(facts) - FACT_KEYS}"
    rec = api.recommend(book=book, pins=case.get("set"), detect_gpu=False, **facts)
    for name, pv in rec.parameters.items():  # every value lies inside the range printed beside it
        if pv.range is not None and isinstance(pv.value, (int, float)):
            assert pv.range[0] <= pv.value <= pv.range[1], f"{name}: {pv.value} outside its own range {pv.range}"
            assert pv.outside_rule_range == (pv.rule_range is not None
                                             and not pv.rule_range[0] <= pv.value <= pv.rule_range[1])
    for text in case.get("memory_notes", []):  # beside the memory figures (the seed table's cross-check)
        notes = rec.memory.notes if rec.memory else []
        assert any(text in n for n in notes), f"no memory note says {text!r}: {notes}"
    for name, expected in case["expect"].items():
        assert set(expected) <= EXPECT_KEYS, f"unknown expectation keys {set(expected) - EXPECT_KEYS}"
        if expected.get("absent"):
            assert name not in rec.parameters, f"{name} should be absent, got {rec.parameters.get(name)}"
            continue
        assert name in rec.parameters, f"{name} missing; left out: {rec.left_out}"
        pv = rec.parameters[name]
        if "value" in expected:
            assert _close(pv.value, expected["value"]), f"{name}: {pv.value!r} != {expected['value']!r}"
        if "rule" in expected:
            assert pv.rule == expected["rule"], f"{name}: set by {pv.rule}, expected {expected['rule']}"
        if "rules" in expected:
            rules = [s.rule for s in pv.trace if s.stage != "round"]  # the grid step is no rule's
            assert rules == expected["rules"], f"{name}: trace {rules}"
        if "case" in expected:
            setting = [s for s in pv.trace if s.stage in ("base", "refine", "derive")]
            assert setting and setting[-1].case == expected["case"], f"{name}: row {setting[-1].case if setting else None}"
        if "range" in expected:
            assert pv.range is not None and _close(list(pv.range), expected["range"]), f"{name}: range {pv.range}"
        if "range_contains" in expected:  # a published value the range must hold, whatever the fit's exact ends
            assert pv.range is not None and pv.range[0] <= expected["range_contains"] <= pv.range[1], \
                f"{name}: range {pv.range}"
        if "rule_range" in expected:
            assert pv.rule_range is not None and _close(list(pv.rule_range), expected["rule_range"]), \
                f"{name}: rule_range {pv.rule_range}"
        if "outside" in expected:
            assert pv.outside_rule_range is expected["outside"], f"{name}: outside_rule_range {pv.outside_rule_range}"
        if "confidence" in expected:
            assert pv.confidence == expected["confidence"], f"{name}: confidence {pv.confidence}"
        if "set_by" in expected:
            assert pv.set_by == expected["set_by"]
        if "step" in expected:  # a step anywhere in the trace: rule, table row, value after it
            want = expected["step"]
            assert any(s.rule == want["rule"] and s.case == want.get("case", s.case)
                       and ("value" not in want or _close(s.after, want["value"])) for s in pv.trace), \
                f"{name}: no step {want} in {[(s.rule, s.case, s.after) for s in pv.trace]}"
        if "overridden" in expected:  # setting rows an override set aside
            assert [s.rule for s in pv.overridden] == expected["overridden"], f"{name}: set aside {pv.overridden}"
        if "set_aside" in expected:  # one of them: rule, table row, the value it would have given
            want = expected["set_aside"]
            assert any(s.rule == want["rule"] and s.case == want.get("case", s.case)
                       and ("value" not in want or _close(s.after, want["value"])) for s in pv.overridden), \
                f"{name}: no set-aside row {want} in {[(s.rule, s.case, s.after) for s in pv.overridden]}"
    for text in case.get("adapted", []):  # what advisor changed so the job fits (rules/memory.yaml fit_to_gpu, CTX004)
        assert any(text in a for a in rec.adapted), f"no adaptation says {text!r}: {rec.adapted}"
    if case.get("adapted") == []:
        assert not rec.adapted, f"unexpected adaptations: {rec.adapted}"
    for text in case.get("warns", []):
        assert any(text in w for w in rec.warnings), f"no warning with {text!r}: {rec.warnings}"
    if case.get("warns") == []:
        assert not rec.warnings, f"unexpected warnings: {rec.warnings}"
