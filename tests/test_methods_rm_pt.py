"""Reward modelling (rm) and continued pretraining (pt) as methods: recommend, validate, memory, trainer
output and the probe, on registry models and tiny models built from a config; and the memory model's
reference-free variants (SimPO, ORPO: rules/variants.yaml reference_model)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor import api
from advisor.configs.readers import read_config
from advisor.facts.model import entry_config
from advisor.memory import estimate
from advisor.memory.knowledge import knowledge
from advisor.memory.shapes import count
from advisor.rulebook.load import Rulebook
from tests.conftest import run_cli
from tests.test_probe import TRL_TINY, plan_for, validate_report

REFERENCE = "reference model (frozen copy)"


def resolved(book: Rulebook, model: str, method: str, peft: str = "lora", **facts: Any) -> dict[str, Any]:
    rec = api.recommend(book=book, model=model, method=method, peft=peft, detect_gpu=False, **facts)
    return {name: pv.value for name, pv in rec.parameters.items()}


def peak(book: Rulebook, model: str, method: str, peft: str, variant: str | None = None,
         **params: Any) -> Any:
    j = api.job_facts(book, model=model, method=method, peft=peft, detect_gpu=False, variant=variant)
    values = {**resolved(book, model, method, peft), "max_seq_length": 1024, "micro_batch_size": 1, **params}
    return estimate(book, j, values)


def item(est: Any, name: str) -> float:
    return next((i.gb for i in est.items if i.name == name), 0.0)


# --- memory: the variant decides the reference model ---------------------------------------------------------

@pytest.mark.parametrize(("variant", "reference"), [(None, True), ("ipo", True), ("kto", True), ("simpo", False),
                                                    ("orpo", False), ("cpo", False)])
def test_a_reference_free_variant_counts_no_frozen_copy_with_full_fine_tuning(
        book: Rulebook, variant: str | None, reference: bool) -> None:
    est = peak(book, "llama-3.2-1b", "dpo", "full", variant)
    assert (REFERENCE in {i.name for i in est.items}) is reference
    assert est.setup.reference_model is reference
    expected = book.variants.get(variant or "dpo", {}).get("reference_model", True)
    assert reference is expected  # the data says it, not a list in code


def test_a_reference_free_variant_saves_exactly_the_frozen_copy(book: Rulebook) -> None:
    dpo = peak(book, "llama-3.2-1b", "dpo", "full")
    simpo = peak(book, "llama-3.2-1b", "dpo", "full", "simpo")
    assert dpo.allocated_gb - simpo.allocated_gb == pytest.approx(item(dpo, REFERENCE), rel=1e-9)


def test_cli_memory_takes_the_variant() -> None:
    def reference(*variant: str) -> list[str]:
        out = run_cli("memory", "--model", "llama-3.2-1b", "--method", "dpo", "--peft", "full", "--gpu", "h100",
                      *variant, "--format", "json")
        assert out.returncode == 0, out.stderr
        return [i["name"] for i in json.loads(out.stdout)["items"] if i["name"] == REFERENCE]

    assert reference() == [REFERENCE] and reference("--variant", "simpo") == []
    out = run_cli("memory", "--model", "llama-8b", "--method", "rm", "--variant", "simpo")
    assert out.returncode == 2 and "simpo is a variant of dpo, not of rm" in out.stderr


def test_the_probe_plans_job_carries_its_variant(book: Rulebook, trl_tiny: Path) -> None:
    plan = plan_for(book, trl_tiny, method="simpo", peft="full", steps=3)
    assert plan.job().task.variant == "simpo"


# --- memory: reward model and continued pretraining ------------------------------------------------------------

def test_a_reward_model_counts_its_score_head_not_lm_head(book: Rulebook) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    for name in ("llama-3.1-8b", "qwen2.5-0.5b"):  # untied lm_head; tied embeddings
        est = peak(book, name, "rm", "full")
        entry = entry_config(book.models[name])
        cfg = AutoConfig.for_model(entry.pop("model_type"), num_labels=1, **entry)
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(cfg, dtype=torch.bfloat16)
        assert est.counts.total == sum(p.numel() for p in model.parameters()), name
        causal = count(knowledge(book), api.job_facts(book, model=name, method="sft", peft="full",
                                                      detect_gpu=False).model)
        assert est.counts.total < causal.total or causal.head == 0


def test_a_reward_model_feeds_pairs_and_holds_no_vocabulary_logits(book: Rulebook) -> None:
    params = {"gradient_checkpointing": False}
    rm, sft = peak(book, "llama-3.1-8b", "rm", "lora", **params), peak(book, "llama-3.1-8b", "sft", "lora", **params)
    assert item(sft, "logits and loss") > 1.0  # 1024 tokens x 128256 vocabulary
    assert item(rm, "logits and loss") < 1e-3  # one score a token
    assert item(rm, "activations") == pytest.approx(2 * item(sft, "activations"), rel=0.01)  # chosen + rejected
    assert "chosen + rejected" in next(i.detail for i in rm.items if i.name == "activations")
    assert REFERENCE not in {i.name for i in peak(book, "llama-3.1-8b", "rm", "full").items}


def test_continued_pretraining_is_one_sequence_like_sft(book: Rulebook) -> None:
    pt, sft = peak(book, "llama-3.1-8b", "pt", "full"), peak(book, "llama-3.1-8b", "sft", "full")
    assert [(i.name, i.gb) for i in pt.items] == [(i.name, i.gb) for i in sft.items]


def test_lora_continued_pretraining_counts_its_full_trained_embeddings(book: Rulebook) -> None:
    est = peak(book, "llama-3.1-8b", "pt", "lora")
    assert est.setup.modules_to_save == ("embed_tokens", "lm_head")
    copies = [i for i in est.items if i.name.startswith("lora_modules_to_save")]
    assert [i.name.split(" (")[0] for i in copies] == ["lora_modules_to_save copies", "lora_modules_to_save gradients",
                                                        "lora_modules_to_save optimizer states"]
    assert all("1.05B params" in i.detail for i in copies)
    sft = peak(book, "llama-3.1-8b", "sft", "lora")
    assert not any(i.name.startswith("lora_modules_to_save") for i in sft.items)
    def step(e: Any) -> float:
        return next(i.gb for i in e.items if i.name == "optimizer step buffer")

    assert step(est) * 2**30 == pytest.approx(step(sft) * 2**30 + 1.05e9 * 2, rel=0.01)  # AdamW's sqrt buffer, bf16


def test_cli_memory_for_rm_and_pt() -> None:
    peaks = {}
    for method in ("rm", "pt", "sft"):
        out = run_cli("memory", "--model", "llama-8b", "--method", method, "--peft", "full", "--gpu", "h100",
                      "--micro-batch", "1", "--set", "gradient_accumulation_steps=1", "--format", "json")
        assert out.returncode in (0, 1), out.stderr  # 1: does not fit the GPU (full fine-tuning of 8B on one H100)
        data = json.loads(out.stdout)
        assert data["method"] == method
        peaks[method] = data["total_gb"]
        logits = sum(i["gb"] for i in data["items"] if i["name"] == "logits and loss")
        assert (logits < 1e-3) is (method == "rm"), (method, logits)
    assert peaks["pt"] == peaks["sft"]
    assert peaks["rm"] < peaks["sft"]  # 525M fewer weights (no lm_head) outweigh the second sequence


# --- recommend ---------------------------------------------------------------------------------------------------

def test_recommend_rm_and_pt_for_an_8b_name_their_rules_and_say_they_are_not_fitted(book: Rulebook) -> None:
    rm = api.recommend(book=book, model="llama-8b", method="rm", peft="lora", detect_gpu=False)
    pt = api.recommend(book=book, model="llama-8b", method="pt", peft="lora", detect_gpu=False)
    assert rm.parameters["learning_rate"].rule == "lr-rm" and pt.parameters["learning_rate"].rule == "lr-pt"
    for rec in (rm, pt):
        lr = rec.parameters["learning_rate"]
        assert lr.confidence == "low" and "no fitted evidence" in lr.trace[-1].case
        assert "beta" not in rec.parameters and "num_generations" not in rec.parameters
    assert rm.parameters["num_train_epochs"].value == 1
    assert pt.parameters["lora_modules_to_save"].value == ["embed_tokens", "lm_head"]


def test_cli_recommend_rm_json_and_explain() -> None:
    out = run_cli("recommend", "--model", "llama-8b", "--method", "rm", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["parameters"]["center_rewards_coefficient"]["value"] == 0.01
    out = run_cli("recommend", "--model", "llama-8b", "--method", "pt", "--peft", "full", "--explain")
    assert out.returncode == 0 and "LR012" in out.stdout and "arXiv:2403.08763" in out.stdout


# --- validate: real LLaMA-Factory / Axolotl / TRL configs ----------------------------------------------------------

CONFIGS = [
    ("llama-factory", {"model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507", "stage": "rm", "do_train": True,
                       "finetuning_type": "lora", "lora_rank": 8, "lora_target": "all", "dataset": "dpo_en_demo",
                       "cutoff_len": 2048, "learning_rate": 1.0e-4, "num_train_epochs": 3.0}, "rm"),
    ("llama-factory", {"model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507", "stage": "pt", "do_train": True,
                       "finetuning_type": "lora", "lora_target": "all", "dataset": "c4_demo",
                       "learning_rate": 1.0e-4}, "pt"),
    ("axolotl", {"base_model": "Qwen/Qwen2.5-0.5B", "reward_model": True, "num_labels": 1,
                 "datasets": [{"path": "x/pairs", "type": "bradley_terry.chat_template"}], "sequence_len": 2048,
                 "micro_batch_size": 2, "learning_rate": 2.0e-4}, "rm"),
    ("axolotl", {"base_model": "HuggingFaceTB/SmolLM2-135M", "pretraining_dataset": [{"path": "x/web", "type": "pretrain"}],
                 "sequence_len": 1024, "micro_batch_size": 1, "max_steps": 1000, "learning_rate": 5.0e-4}, "pt"),
    ("axolotl", {"base_model": "Qwen/Qwen2.5-3B", "process_reward_model": True, "sequence_len": 2048,
                 "micro_batch_size": 8, "learning_rate": 2.0e-4}, "prm"),
    ("trl", {"model_name_or_path": "Qwen/Qwen2.5-0.5B", "center_rewards_coefficient": 0.01,
             "learning_rate": 1.0e-5, "output_dir": "o"}, "rm"),
]


@pytest.mark.parametrize(("fmt", "data", "method"), CONFIGS, ids=[f"{f}-{m}" for f, _, m in CONFIGS])
def test_validate_judges_rm_and_pt_configs_and_names_what_it_cannot(book: Rulebook, tmp_path: Path, fmt: str,
                                                                   data: dict[str, Any], method: str) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg, _ = read_config(path, book)
    assert cfg.method is not None and cfg.method.value == method
    out = run_cli("validate", str(path), "--format", "json")
    assert out.returncode in (0, 1), out.stderr
    codes = {f["code"] for r in json.loads(out.stdout)["files"] for f in r["findings"]}
    assert ("VCF002" in codes) is (method not in ("rm", "pt"))


# --- the probe -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trl_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trl-tiny") / "config.json"
    path.write_text(json.dumps(TRL_TINY))
    return path


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.slow
@pytest.mark.parametrize("peft", ["lora", "full"])
def test_rm_probe_trains_reward_trainers_bradley_terry_loss_on_a_score_head(book: Rulebook, trl_tiny: Path,
                                                                            peft: str) -> None:
    from advisor.probe import make_report, run_probe

    plan = plan_for(book, trl_tiny, method="rm", peft=peft, steps=3, learning_rate=1e-2, micro_batch=1)
    coef = plan.settings["center_rewards_coefficient"]
    assert coef.describe() == "rule rm-center-rewards" and coef.value == 0.01
    report = make_report(book, plan, run_probe(plan))
    validate_report(report.as_dict())
    res = report.result
    assert res.status == "completed" and res.trainer.startswith("trl.RewardTrainer 1.")
    assert any("RewardTrainer" in n and "score head" in n for n in report.notes)
    assert not any("no loss for the variant" in n for n in res.data_notes)
    vocab, hidden = TRL_TINY["vocab_size"], TRL_TINY["hidden_size"]
    causal = count(knowledge(book), plan.facts)
    assert causal.head == vocab * hidden  # TRL_TINY's lm_head is untied
    if peft == "full":  # the causal LM less lm_head plus the score head: what the memory model counts
        assert res.total_params == res.trainable_params == causal.total - causal.head + hidden
        assert res.total_params == peak(book, str(trl_tiny), "rm", "full").counts.total
    else:  # the adapters and the score head (peft's SEQ_CLS task trains it in full)
        lora = count(knowledge(book), plan.facts, list(plan.lora_target_modules), plan.lora_rank).lora
        assert res.trainable_params == lora + hidden
    assert len(res.logs) == 3
    for row in res.logs:
        # one pair a step: rewards [r_chosen, r_rejected]; loss = -log sigmoid(margin) + 0.01 (r_c + r_r)^2
        assert {"accuracy", "margin", "mean_reward"} <= set(row)
        expected = softplus(-row["margin"]) + coef.value * (2 * row["mean_reward"]) ** 2
        assert row["loss"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_pt_probe_is_the_language_modelling_step_and_says_that_is_its_loss(book: Rulebook, trl_tiny: Path) -> None:
    from advisor.probe import make_report, run_probe

    plan = plan_for(book, trl_tiny, method="pt", peft="lora", steps=3, learning_rate=1e-3, micro_batch=2)
    assert plan.learning_rate == pytest.approx(1e-3)
    report = make_report(book, plan, run_probe(plan))
    validate_report(report.as_dict())
    res = report.result
    assert res.status == "completed" and not res.trainer.startswith("trl.")
    assert any("language-modelling step, which is its loss" in n for n in report.notes)
    assert all(math.isfinite(s.loss) for s in res.steps) and len(res.steps) == 3
