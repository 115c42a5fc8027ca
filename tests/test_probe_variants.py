"""advisor probe of DPO's variants with a TRL trainer of their own (rules/variants.yaml `trl`): SimPO and CPO
through CPOTrainer, ORPO through ORPOTrainer, KTO through KTOTrainer, each on a tiny Llama built from a config."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from advisor.provenance import Source
from advisor.rulebook.load import Rulebook
from tests.test_probe import TRL_TINY, plan_for, validate_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trl_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trl-tiny") / "config.json"
    path.write_text(json.dumps(TRL_TINY))
    return path


def probe(book: Rulebook, trl_tiny: Path, method: str, **kw: Any) -> Any:
    from advisor.probe import make_report, run_probe

    kw.setdefault("pins", {"warmup_ratio": 0.0})
    plan = plan_for(book, trl_tiny, method=method, peft="lora", steps=3, learning_rate=1e-2, **kw)
    report = make_report(book, plan, run_probe(plan))
    validate_report(report.as_dict())
    assert len(report.result.steps) == len(report.result.logs) == 3
    return plan, report


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_simpo_trains_cpo_trainers_simpo_loss_at_the_rulebooks_beta_and_gamma(book: Rulebook,
                                                                              trl_tiny: Path) -> None:
    plan, report = probe(book, trl_tiny, "simpo", micro_batch=1)
    assert plan.variant == "simpo"
    beta, gamma = plan.settings["beta"], plan.settings["simpo_gamma"]
    assert beta.source is Source.RULE and beta.describe() == "rule simpo-beta" and beta.value == 2.0
    assert gamma.source is Source.RULE and gamma.describe() == "rule simpo-gamma"
    res = report.result
    assert res.trainer.startswith("trl.experimental.cpo.CPOTrainer 1.")
    assert any("simpo" in n and "cpo_alpha 0.0" in n for n in res.data_notes)
    assert not any("DPOTrainer" in n for n in report.notes)  # not the method's probe note
    assert any("logs no token count" in n for n in res.data_notes)  # CPOTrainer's logs have no num_tokens
    from advisor.probe.report import headline
    assert report.summary()["median_tokens_per_s"] is None  # not measured: null, never "0 tokens/s"
    assert any(line.startswith("tokens/s not measured, ") for line in headline(report))
    # SimPO's loss, -log sigmoid(margin - gamma) with margin = beta * (the length-averaged log-ratio of chosen to
    # rejected), no reference model and no NLL term (cpo_alpha 0): one pair a step, so the logs give it exactly.
    for row in res.logs:
        assert row["loss"] == pytest.approx(softplus(gamma.value - row["rewards/margins"]), rel=1e-4)
    assert any(abs(row["rewards/margins"]) > 1e-3 for row in res.logs)  # a real margin, not DPO's zero at step 1


def test_cpo_trains_cpo_trainers_sigmoid_loss_plus_its_nll_term(book: Rulebook, trl_tiny: Path) -> None:
    plan, report = probe(book, trl_tiny, "cpo", micro_batch=1)
    assert plan.variant == "cpo"
    alpha = plan.settings["cpo_alpha"]
    assert alpha.source is Source.RULE and alpha.describe() == "rule cpo-alpha" and alpha.value == 1.0
    assert plan.settings["beta"].describe() == "rule cpo-beta"
    res = report.result
    assert res.trainer.startswith("trl.experimental.cpo.CPOTrainer 1.")
    # CPO's loss, -log sigmoid(margin) + cpo_alpha * NLL of the chosen response, no reference model: one pair
    # a step, so the logs give it exactly.
    for row in res.logs:
        assert row["loss"] == pytest.approx(softplus(-row["rewards/margins"]) + alpha.value * row["nll_loss"],
                                            rel=1e-4)
    assert all(row["nll_loss"] > 0 for row in res.logs)  # the behaviour-cloning term is on


def test_orpo_trains_orpo_trainers_nll_plus_odds_ratio_loss_at_its_lambda(book: Rulebook, trl_tiny: Path) -> None:
    plan, report = probe(book, trl_tiny, "orpo", micro_batch=2, pins={"warmup_ratio": 0.0, "beta": 0.5})
    assert plan.variant == "orpo" and plan.settings["beta"].value == 0.5
    res = report.result
    assert res.trainer.startswith("trl.experimental.orpo.ORPOTrainer 1.")
    for row in res.logs:
        # ORPO's loss: the chosen responses' NLL minus lambda (ORPOConfig.beta) times the mean log-sigmoid odds ratio
        assert {"nll_loss", "log_odds_ratio", "log_odds_chosen"} <= set(row)
        assert row["log_odds_ratio"] < 0
        assert row["loss"] == pytest.approx(row["nll_loss"] - 0.5 * row["log_odds_ratio"], rel=1e-4)


def test_kto_trains_kto_trainers_unpaired_loss_at_its_weights(book: Rulebook, trl_tiny: Path) -> None:
    plan, report = probe(book, trl_tiny, "kto", micro_batch=4,
                         pins={"warmup_ratio": 0.0, "desirable_weight": 1.3, "undesirable_weight": 1.3})
    assert plan.variant == "kto"
    res = report.result
    assert res.trainer.startswith("trl.KTOTrainer 1.")
    first = res.logs[0]
    assert {"kl", "rewards/chosen", "rewards/rejected", "logps/chosen"} <= set(first)
    # KTO's loss at the first step: the adapter starts at zero, so policy = reference, log-ratios and KL are 0 and
    # each example's loss is its weight x (1 - sigmoid(0)); DPO's sigmoid loss there is log 2.
    assert first["kl"] == 0 and first["loss"] == pytest.approx(1.3 * 0.5, rel=1e-4)
    assert any(row["loss"] != first["loss"] for row in res.logs[1:])  # the policy moved


def test_the_rules_set_kto_and_orpo_knobs_by_variant(book: Rulebook, trl_tiny: Path) -> None:
    kto = plan_for(book, trl_tiny, method="kto", peft="lora")
    weight = kto.settings["desirable_weight"]
    assert weight.value == 1.0 and weight.describe() == "rule kto-desirable-weight"
    assert kto.settings["undesirable_weight"].describe() == "rule kto-undesirable-weight"
    orpo = plan_for(book, trl_tiny, method="orpo", peft="lora")
    assert orpo.settings["beta"].describe() == "rule orpo-lambda"
    dpo = plan_for(book, trl_tiny, method="dpo", peft="lora")
    assert "simpo_gamma" not in dpo.settings and dpo.settings["beta"].describe() == "rule dpo-beta"


def test_a_configs_loss_key_picks_the_variants_trainer_and_its_rules(book: Rulebook, trl_tiny: Path,
                                                                     tmp_path: Path) -> None:
    from advisor.probe.trl_run import trl_spec

    factory = tmp_path / "simpo.yaml"
    factory.write_text(f"model_name_or_path: {trl_tiny}\nstage: dpo\npref_loss: simpo\nfinetuning_type: lora\n"
                       "simpo_gamma: 0.5\n")
    plan = plan_for(book, trl_tiny, model=None, config=factory, method=None)
    spec = trl_spec(plan)
    assert plan.variant == "simpo" and spec is not None and (spec.trainer, spec.loss_type) == ("CPOTrainer", "simpo")
    assert plan.settings["simpo_gamma"].value == 0.5 and plan.settings["simpo_gamma"].source is Source.CONFIG
    assert plan.settings["beta"].describe() == "rule simpo-beta"  # the config sets no beta: SimPO's rule, not DPO's
    axolotl = tmp_path / "orpo.yml"
    axolotl.write_text(f"base_model: {trl_tiny}\nrl: orpo\nadapter: lora\norpo_alpha: 0.2\n")
    plan = plan_for(book, trl_tiny, model=None, config=axolotl, method=None)
    spec = trl_spec(plan)
    assert plan.variant == "orpo" and spec is not None and spec.trainer == "ORPOTrainer"
    assert plan.settings["beta"].value == 0.2  # orpo_alpha is ORPOConfig's beta
    ipo = trl_spec(plan_for(book, trl_tiny, method="ipo", peft="lora"))
    assert ipo is not None and (ipo.trainer, ipo.variant) == ("DPOTrainer", None)  # no trainer of its own


def test_length_normalized_dpo_takes_trls_name_for_another_trainers_loss(book: Rulebook, trl_tiny: Path) -> None:
    from trl import DPOConfig

    from advisor.probe.plan import ProbeInputError
    from advisor.probe.trl_run import _loss_type, trl_spec

    for given in ("dpo_norm", "sigmoid_norm"):  # open-instruct's name, TRL's name
        plan = plan_for(book, trl_tiny, method="dpo", peft="lora", pins={"loss_type": given})
        spec = trl_spec(plan)
        assert plan.variant == "ldpo" and spec is not None and spec.trainer == "DPOTrainer"
        assert _loss_type(plan, spec, DPOConfig, []) == "sigmoid_norm"
    plan = plan_for(book, trl_tiny, method="dpo", peft="lora", pins={"loss_type": "no_such_loss"})
    with pytest.raises(ProbeInputError, match="not a loss type of TRL's DPOConfig"):
        _loss_type(plan, trl_spec(plan), DPOConfig, [])  # type: ignore[arg-type]


def probe_grpo_variant(book: Rulebook, trl_tiny: Path, loss: str) -> Any:
    """Two steps of a GRPO variant named by its loss, four completions of at most 8 tokens a prompt."""
    from advisor.probe import make_report, run_probe

    plan = plan_for(book, trl_tiny, method="grpo", peft="lora", steps=2, micro_batch=4, learning_rate=None,
                    pins={"warmup_ratio": 0.0, "num_generations": 4, "max_completion_length": 8, "loss_type": loss,
                          "temperature": 1.0})
    assert plan.variant == loss
    return make_report(book, plan, run_probe(plan)).result


def test_rloo_trains_rloo_trainers_leave_one_out_step(book: Rulebook, trl_tiny: Path) -> None:
    res = probe_grpo_variant(book, trl_tiny, "rloo")
    assert res.trainer.startswith("trl.RLOOTrainer 1.") and len(res.steps) == 2
    for row in res.logs:  # RLOO's own telemetry: rewards per group, completions at the config's cap
        assert {"reward", "reward_std", "completions/mean_length"} <= set(row)
        assert row["completions/max_length"] <= 8
    assert len(res.samples) == 2 * 4


def test_gspo_trains_grpo_trainers_step_with_sequence_level_ratios(book: Rulebook, trl_tiny: Path) -> None:
    res = probe_grpo_variant(book, trl_tiny, "gspo")
    assert res.trainer.startswith("trl.GRPOTrainer 1.") and len(res.steps) == 2
    # TRL has no loss_type gspo: GSPO is GRPOConfig's importance_sampling_level sequence (rules/variants.yaml trl)
    assert any("importance_sampling_level sequence" in n for n in res.data_notes), res.data_notes
