"""The batch a recommendation trains: micro-batch x accumulation x GPUs is the effective batch it
states (and the LR rules read), and the memory line keeps memory's limit apart from the batch's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from advisor import api
from advisor.render.memory import summary_line
from advisor.rulebook.load import Rulebook
from tests.conftest import run_cli


def _values(book: Rulebook, **facts: object) -> dict[str, object]:
    rec = api.recommend(book=book, detect_gpu=False, **facts)
    return {name: pv.value for name, pv in rec.parameters.items()} | {"_warnings": rec.warnings, "_rec": rec}


@pytest.mark.parametrize(("method", "gpus"), [("grpo", 1), ("grpo", 3), ("grpo", 6), ("grpo", 8), ("sft", 3),
                                              ("sft", 6), ("sft", 8), ("dpo", 3), ("dpo", 5)])
def test_micro_batch_x_accumulation_x_gpus_is_the_effective_batch(book: Rulebook, method: str, gpus: int) -> None:
    v = _values(book, model="llama-8b", method=method, peft="lora", gpu="h100", gpus=gpus)
    trained = int(v["micro_batch_size"]) * int(v["gradient_accumulation_steps"]) * gpus  # type: ignore[call-overload]
    assert trained == v["effective_batch_size"], v
    assert not [w for w in v["_warnings"] if "not the effective batch" in w]  # type: ignore[attr-defined]
    if method == "grpo":  # TRL: the generation batch is a multiple of the group size
        assert trained % int(v["num_generations"]) == 0  # type: ignore[call-overload]
        assert v["effective_batch_size"] == int(v["prompts_per_step"]) * int(v["num_generations"])  # type: ignore[call-overload]
    rec = v["_rec"]
    lr_inputs = rec.parameters["learning_rate"].trace  # type: ignore[attr-defined]
    read = [step.inputs.get("params.effective_batch_size") for step in lr_inputs if step.inputs]
    assert v["effective_batch_size"] in read  # the LR rule reads the batch that trains


def test_one_gpu_keeps_the_tables_effective_batch(book: Rulebook) -> None:
    one = _values(book, model="llama-8b", method="sft", peft="lora", gpu="h100", gpus=1)
    three = _values(book, model="llama-8b", method="sft", peft="lora", gpu="h100", gpus=3)
    table = one["effective_batch_size"]  # one GPU: the table's batch as it stands
    assert three["effective_batch_size"] == -(-table // 3) * 3  # rounded up to split over 3 GPUs (16 -> 18)
    assert three["micro_batch_size"] * three["gradient_accumulation_steps"] * 3 == three["effective_batch_size"]


def test_memory_never_warns_above_usable_for_a_figure_below_it(book: Rulebook) -> None:
    """Issue: micro-batch 4 on 8 GPUs fits memory (53 GiB of 71.7) but exceeds the effective batch's share
    (16 / 8 = 2): the memory line names the two limits apart and no warning calls 53 GiB 'above' 71.7."""
    answer = api.memory(book=book, model="llama-8b", method="sft", peft="lora", gpu="h100", gpus=8, micro_batch=4)
    mem = answer.memory
    assert mem.total_gb < mem.usable_gb and mem.fits
    assert mem.max_micro_batch >= 4 and mem.batch_share == 2
    line = summary_line(mem)
    assert f"largest micro-batch that fits in memory: {mem.max_micro_batch}" in line
    assert "the effective batch allows at most 2 per GPU" in line
    assert not [w for w in answer.rec.warnings if "above the" in w]
    assert [w for w in answer.rec.warnings if "BAT004" in w]  # the batch limit is still said, as the batch's


def test_a_micro_batch_memory_cannot_hold_is_warned_with_its_figure(book: Rulebook) -> None:
    answer = api.memory(book=book, model="llama-8b", method="sft", peft="lora", gpu="h100", gpus=8, micro_batch=8)
    mem = answer.memory
    assert mem.total_gb > mem.usable_gb
    above = [w for w in answer.rec.warnings if "is predicted to need" in w]
    assert len(above) == 1 and f"{mem.total_gb:.1f} GiB, above the {mem.usable_gb:.1f} GiB" in above[0]


def test_nothing_fits_says_so_in_words(book: Rulebook) -> None:
    rec = api.recommend(book=book, model="llama-70b", method="sft", peft="full", gpu="rtx-4090", detect_gpu=False)
    assert rec.memory is not None and rec.memory.max_micro_batch == 0
    line = summary_line(rec.memory)
    assert "not even micro-batch 1 fits" in line and "fits: 0" not in line


def test_one_figure_reads_the_same_in_the_memory_line_and_the_warning(book: Rulebook) -> None:
    """DPO QLoRA on a 4090: the predicted peak printed once in the memory line and once in the warning."""
    out = run_cli("recommend", "--model", "llama-8b", "--method", "dpo", "--peft", "qlora", "--gpu", "rtx-4090",
                  "--seq-len", "4096", "--no-detect").stdout  # the length given: not shortened to fit (CTX004)
    line = re.search(r"^memory predicted peak ([0-9.]+) GiB", out, re.M)
    warning = re.search(r"at micro-batch 1 the predicted peak is ([0-9.]+) GiB", " ".join(out.split()))
    assert line is not None and warning is not None
    assert line.group(1) == warning.group(1)


def test_an_mi250x_is_one_gcd_of_64_gb(book: Rulebook) -> None:
    """ROCm and PyTorch see an MI250X as two GCDs of 64 GB each: one process never holds 128 GB."""
    entry = book.gpus["mi250x"]
    assert entry["memory_gb"] == 64 and entry["usable_mib"] / 1024 <= 64


def test_a_70b_qlora_job_is_not_sent_to_an_mi250x(book: Rulebook) -> None:
    rec = api.recommend(book=book, model="llama-70b", method="sft", peft="qlora", gpu="a100-80gb", detect_gpu=False)
    assert rec.memory is not None and not rec.memory.fits
    assert not [a for a in rec.memory.alternatives if "MI250X" in a and "holds" in a]


CHECK_WITH_COMPANION = """
family: mine
description: my checks
rules:
  - id: my-micro-check
    code: MYC001
    kind: check
    parameter: micro_batch_size
    severity: warning
    summary: my micro-batch check
    source: {doc: my notes}
    confidence: low
    fail: "config.micro_batch_size > 4"
    message: "micro-batch {config.micro_batch_size}"
    fix: "largest_divisor(config.micro_batch_size, 4)"
    fix_also:
      PARAM: "config.micro_batch_size // largest_divisor(config.micro_batch_size, 4)"
"""


def test_a_checks_companion_fix_names_a_known_parameter(tmp_path: Path) -> None:
    from advisor.errors import AdvisorError
    from advisor.rulebook.load import load_rulebook

    d = tmp_path / "rules"
    d.mkdir()
    (d / "mine.yaml").write_text(CHECK_WITH_COMPANION.replace("PARAM", "gradient_accumulation_step"))
    with pytest.raises(AdvisorError, match=r"rule 'my-micro-check' key 'fix_also.gradient_accumulation_step': unknown"):
        load_rulebook([d])
    (d / "mine.yaml").write_text(CHECK_WITH_COMPANION.replace("PARAM", "gradient_accumulation_steps"))
    book = load_rulebook([d])
    assert [name for name, _ in book.rules["my-micro-check"].fix_also] == ["gradient_accumulation_steps"]


@pytest.mark.parametrize(("n", "at_most", "expected"), [(16, 2, 2), (16, 3, 2), (12, 5, 4), (7, 4, 1), (6, 8, 6),
                                                        (1, 0, 1)])
def test_largest_divisor(n: int, at_most: int, expected: int) -> None:
    from advisor.rulebook.formula import parse

    assert parse(f"largest_divisor({n}, {at_most})").evaluate(lambda name: None) == expected


def test_cosmetic_wording(book: Rulebook, tmp_path: Path) -> None:
    """One GPU is '1 GPU'; VPM001 names the situation in words when none is given, never '(?)'."""
    from advisor.facts.hardware import resolve_gpu
    from advisor.validate import Overrides, Selection, validate_file

    answer = api.memory(book=book, model="llama-8b", method="sft", peft="lora", gpu="h100", pins={"sharding": "zero3"})
    assert any("divided over 1 GPU" in n and "1 GPUs" not in n for n in answer.memory.notes), answer.memory.notes
    path = tmp_path / "dpo.yaml"
    path.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nbeta: 2.0\nloss_type: sigmoid\nuse_peft: true\n")
    hw = resolve_gpu(book, name=None, memory_gb=None, count=None, detect=False)
    found = {f.code: f for f in validate_file(path, book, hw, Overrides(), Selection()).findings}
    assert "(?)" not in found["VPM001"].expected and "situation: none given" in found["VPM001"].expected
