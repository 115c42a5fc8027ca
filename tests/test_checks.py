"""One parametrised test over tests/checks/*.yaml: every check code has a case that fails and one
that passes, on configs written in the trainers' own layouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor.facts.hardware import resolve_gpu
from advisor.rulebook.load import Rulebook
from advisor.validate import Overrides, Selection, validate_file

CASES_DIR = Path(__file__).parent / "checks"


def _cases() -> list[Any]:
    out = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for i, case in enumerate(yaml.safe_load(path.read_text())["cases"]):
            label = case.get("name", f"{case['code']} {case['expect']} {i}")
            out.append(pytest.param(case, id=f"{path.stem}::{label}"))
    return out


def run_case(case: dict[str, Any], book: Rulebook, tmp_path: Path) -> list[str]:
    args = dict(case.get("args", {}))
    path = tmp_path / case.get("path", "config.yaml")  # `path`: where the file sits, for VCF014's folder names
    path.parent.mkdir(parents=True, exist_ok=True)
    # `text`: the file as written, for what a mapping cannot hold (a key given twice)
    path.write_text(case["text"] if "text" in case else yaml.safe_dump(case["config"], sort_keys=False))
    gpus = args.pop("gpus", None)  # --gpus: the hardware's count, and the world over the file's (as the CLI)
    gpu = resolve_gpu(book, name=args.pop("gpu", None), memory_gb=None, count=gpus, detect=False)
    if "launch" in case:  # an accelerate launch config beside the training config (--launch-config)
        from advisor.configs.sharding import read_launch_config

        launch = tmp_path / "launch.yaml"
        launch.write_text(yaml.safe_dump(case["launch"], sort_keys=False))
        args["launch"] = read_launch_config(launch)
    over = Overrides(config_format=case.get("format"), gpus=gpus, **args)
    report = validate_file(path, book, gpu, over, Selection())
    assert report.error is None, report.error
    return [f.code for f in report.findings]


@pytest.mark.parametrize("case", _cases())
def test_check_case(case: dict[str, Any], book: Rulebook, tmp_path: Path) -> None:
    codes = run_case(case, book, tmp_path)
    if case["expect"] == "fail":
        assert case["code"] in codes, codes
    else:
        assert case["code"] not in codes, codes


def test_every_check_has_a_failing_and_a_passing_case(book: Rulebook) -> None:
    seen: dict[str, set[str]] = {}
    for param in _cases():
        case = param.values[0]
        seen.setdefault(case["code"], set()).add(case["expect"])
    codes = {r.code for r in book.rules.values() if r.kind == "check"}
    assert codes <= set(seen), f"checks without cases: {sorted(codes - set(seen))}"
    assert all(v == {"pass", "fail"} for k, v in seen.items() if k in codes), seen


def test_each_checks_cases_sit_beside_its_family(book: Rulebook) -> None:
    """A check lives in its family's rule file (rules/lora.yaml); its cases in the fixture file of
    the same name (tests/checks/lora.yaml), so a family is one rule file and one case file."""
    where = {r.code: r.file.stem for r in book.rules.values() if r.kind == "check"}
    misplaced = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text())["cases"]:
            if where.get(case["code"]) != path.stem:
                misplaced.append(f"{path.name}: {case['code']} (its rule is in rules/{where.get(case['code'])}.yaml)")
    assert misplaced == []
