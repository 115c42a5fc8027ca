"""Families whose decoder layers are not all alike (rules/families.yaml `layers`, advisor/facts/layers.py):
hybrid linear-attention, state-space hybrids, LFM2, MLA with first-k-dense MoE, interleaved MoE. Each count
is checked against the transformers model built on the meta device from the same config, LoRA's trainable
parameters against peft, and the generation cache against what each layer kind keeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor import api
from advisor.errors import FactError
from advisor.facts.model import billions, entry_config, facts_from_config, registry_model, resolve_model
from advisor.memory import estimate
from advisor.memory.knowledge import knowledge
from advisor.memory.shapes import count
from advisor.rulebook.load import Rulebook
from tests.conftest import run_cli
from tests.test_model_sources import make_cache

SMALL = {"hidden_size": 64, "vocab_size": 128, "max_position_embeddings": 256, "num_attention_heads": 4,
         "num_key_value_heads": 2}
LINEAR = {"linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 8,
          "linear_value_head_dim": 12, "head_dim": 16}
MLA = {"num_key_value_heads": 4, "intermediate_size": 96, "moe_intermediate_size": 24, "n_routed_experts": 8,
       "num_experts_per_tok": 2, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
       "v_head_dim": 12, "n_group": 1, "topk_group": 1}
MAMBA2 = {"mamba_n_heads": 6, "mamba_d_head": 8, "mamba_n_groups": 2, "mamba_d_state": 10, "mamba_d_conv": 4}
# One tiny config per family, choosing the less common branches of each description (explicit layer
# lists and patterns, a second dense layer, biases, optional norms, no query compression, ...).
TINY: dict[str, dict[str, Any]] = {
    "qwen3_5": {"model_type": "qwen3_5_text", "num_hidden_layers": 4, "intermediate_size": 96, **LINEAR},
    "qwen3_5_moe": {"model_type": "qwen3_5_moe_text", "num_hidden_layers": 4, "moe_intermediate_size": 24,
                    "shared_expert_intermediate_size": 40, "num_experts": 8, "num_experts_per_tok": 2,
                    "layer_types": ["linear_attention", "full_attention", "linear_attention", "full_attention"],
                    **LINEAR},
    "qwen3_next": {"model_type": "qwen3_next", "num_hidden_layers": 4, "intermediate_size": 72,
                   "moe_intermediate_size": 24, "shared_expert_intermediate_size": 40, "num_experts": 8,
                   "num_experts_per_tok": 2, "decoder_sparse_step": 2, **LINEAR},
    "deepseek_v3": {"model_type": "deepseek_v3", "num_hidden_layers": 3, "q_lora_rank": 24, "n_shared_experts": 2,
                    "first_k_dense_replace": 1, **MLA},
    "deepseek_v2": {"model_type": "deepseek_v2", "num_hidden_layers": 3, "q_lora_rank": None, "n_shared_experts": 2,
                    "first_k_dense_replace": 2, **MLA},
    "glm4_moe_lite": {"model_type": "glm4_moe_lite", "num_hidden_layers": 3, "q_lora_rank": 24,
                      "n_shared_experts": 1, "mlp_layer_types": ["dense", "sparse", "sparse"], **MLA},
    "glm4_moe": {"model_type": "glm4_moe", "num_hidden_layers": 2, "head_dim": 16, "intermediate_size": 96,
                 "moe_intermediate_size": 24, "n_routed_experts": 8, "num_experts_per_tok": 2,
                 "n_shared_experts": 1, "first_k_dense_replace": 1, "attention_bias": True, "use_qk_norm": True},
    "falcon_h1": {"model_type": "falcon_h1", "num_hidden_layers": 2, "head_dim": 16, "intermediate_size": 96,
                  "mamba_d_ssm": 48, "mamba_rms_norm": True, **MAMBA2},
    "jamba": {"model_type": "jamba", "num_hidden_layers": 4, "intermediate_size": 96, "num_experts": 4,
              "num_experts_per_tok": 2, "attn_layer_period": 4, "attn_layer_offset": 2, "mamba_d_state": 8,
              "mamba_dt_rank": 6},
    "nemotron_h": {"model_type": "nemotron_h", "num_hidden_layers": 5, "hybrid_override_pattern": "M-*EM",
                   "head_dim": 16, "intermediate_size": 96, "ssm_state_size": 10, "mamba_num_heads": 6,
                   "mamba_head_dim": 8, "n_groups": 2, "conv_kernel": 4, "n_routed_experts": 4,
                   "num_experts_per_tok": 2, "moe_intermediate_size": 24, "moe_shared_expert_intermediate_size": 40},
    "nemotron_h_latent": {"model_type": "nemotron_h", "num_hidden_layers": 3, "hybrid_override_pattern": "EM*",
                          "head_dim": 16, "intermediate_size": 96, "ssm_state_size": 10, "mamba_num_heads": 6,
                          "mamba_head_dim": 8, "n_groups": 2, "conv_kernel": 4, "n_routed_experts": 4,
                          "num_experts_per_tok": 2, "moe_intermediate_size": 24, "moe_latent_size": 32,
                          "moe_shared_expert_intermediate_size": 40},
    "granitemoehybrid": {"model_type": "granitemoehybrid", "num_hidden_layers": 2, "layer_types": ["mamba", "attention"],
                         "intermediate_size": 96, "mamba_d_state": 10, "mamba_n_heads": 8, "mamba_d_head": 16,
                         "mamba_n_groups": 2, "num_local_experts": 4, "num_experts_per_tok": 2,
                         "shared_intermediate_size": 40},
    "lfm2": {"model_type": "lfm2", "num_hidden_layers": 3, "full_attn_idxs": [1], "intermediate_size": 100,
             "block_ffn_dim_multiplier": 1.5, "block_multiple_of": 16},
    "lfm2_moe": {"model_type": "lfm2_moe", "num_hidden_layers": 3, "layer_types": ["conv", "full_attention", "conv"],
                 "intermediate_size": 96, "moe_intermediate_size": 24, "num_experts": 4, "num_experts_per_tok": 2,
                 "num_dense_layers": 1},
    "mamba": {"model_type": "falcon_mamba", "num_hidden_layers": 2, "state_size": 8, "time_step_rank": 6},
    "mamba2": {"model_type": "mamba2", "num_hidden_layers": 2, "state_size": 8, "num_heads": 8, "head_dim": 16,
               "n_groups": 2},
    "kimi_linear": {"model_type": "kimi_linear", "num_hidden_layers": 3, "num_experts": 4, "num_experts_per_token": 2,
                    "num_shared_experts": 1, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
                    "linear_attn_config": {"kda_layers": [1, 2], "full_attn_layers": [3], "head_dim": 8, "num_heads": 4,
                                           "short_conv_kernel_size": 4}, **MLA},
    "llama4": {"model_type": "llama4_text", "num_hidden_layers": 4, "head_dim": 16, "intermediate_size": 48,
               "intermediate_size_mlp": 96, "num_local_experts": 4, "interleave_moe_layer_step": 2},
    # the last layers reuse earlier keys and values; per-layer embeddings; AltUp and Laurel
    "gemma3n": {"model_type": "gemma3n_text", "num_hidden_layers": 5, "head_dim": 16, "intermediate_size": [96] * 5,
                "num_kv_shared_layers": 2, "vocab_size_per_layer_input": 96, "hidden_size_per_layer_input": 8,
                "laurel_rank": 6, "altup_num_inputs": 3, "tie_word_embeddings": False,
                "layer_types": ["sliding_attention", "full_attention"] * 2 + ["sliding_attention"]},
    # full layers with their own head size, double-wide MLPs in the KV-sharing layers, experts, PLE
    "gemma4": {"model_type": "gemma4_text", "num_hidden_layers": 6, "head_dim": 16, "global_head_dim": 32,
               "intermediate_size": 96, "num_kv_shared_layers": 2, "use_double_wide_mlp": True,
               "enable_moe_block": True, "num_experts": 4, "top_k_experts": 2, "moe_intermediate_size": 24,
               "hidden_size_per_layer_input": 8, "vocab_size_per_layer_input": 96,
               "layer_types": ["sliding_attention", "full_attention"] * 3},
    # keys as values and global KV heads in the full layers (Gemma 4 31B's and 12B's layout)
    "gemma4_unified": {"model_type": "gemma4_unified_text", "num_hidden_layers": 7, "head_dim": 16,
                       "global_head_dim": 32, "intermediate_size": 96, "attention_k_eq_v": True,
                       "num_global_key_value_heads": 1, "attention_bias": True},
}


def _config(family: str) -> dict[str, Any]:
    return {**SMALL, **TINY[family]}


def _build(cfg: dict[str, Any]) -> Any:
    """The transformers model of ``cfg`` on the meta device (shapes, no memory): the causal LM, or the
    base model where the family has no causal-LM class of its own (Mistral 4 is a text tower)."""
    import torch
    import transformers

    conf = transformers.AutoConfig.for_model(cfg["model_type"], **{k: v for k, v in cfg.items() if k != "model_type"})
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(conf)


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", sorted(TINY))
def test_counts_and_lora_match_transformers_and_peft(book: Rulebook, family: str) -> None:
    from peft import LoraConfig, get_peft_model

    cfg = _config(family)
    facts = facts_from_config(cfg, book, name=family, source="file")
    assert facts.family == family.removesuffix("_latent") and facts.layer_kinds
    model = _build(cfg)
    real = _params(model)
    targets = [*facts.attention_modules, *facts.mlp_modules]
    c = count(knowledge(book), facts, targets, 4)
    assert c.total == real
    assert billions(real) == facts.params_b
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=targets))
    assert c.lora == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    # every module name the family lists is one the model has (MLA: q_proj or q_a_proj / q_b_proj)
    assert set(c.unmatched_targets) <= {"q_proj", "q_a_proj", "q_b_proj"}


def test_mistral4_text_tower_matches_transformers(book: Rulebook) -> None:
    import torch
    import transformers

    cfg = {**SMALL, "model_type": "mistral4", "num_hidden_layers": 2, "q_lora_rank": 24, "n_shared_experts": 1,
           "first_k_dense_replace": 1, **MLA}
    conf = transformers.AutoConfig.for_model("mistral4", **{k: v for k, v in cfg.items() if k != "model_type"})
    with torch.device("meta"):
        base = transformers.AutoModel.from_config(conf)  # no causal-LM class: the tower, without lm_head
    facts = facts_from_config(cfg, book, name="m4", source="file")
    assert count(knowledge(book), facts).total == _params(base) + cfg["vocab_size"] * cfg["hidden_size"]


def test_a_layer_list_and_its_interval_agree(book: Rulebook) -> None:
    # Qwen3.5 without layer_types: every full_attention_interval-th layer is full attention
    listed = {**_config("qwen3_5"), "layer_types": ["linear_attention"] * 3 + ["full_attention"]}
    assert facts_from_config(listed, book, name="a", source="file").params_b \
        == facts_from_config(_config("qwen3_5"), book, name="b", source="file").params_b
    kinds = {k.id: k.layers for k in facts_from_config(listed, book, name="a", source="file").layer_kinds}
    assert kinds == {"full_attention": 1, "linear_attention": 3, "mlp": 4}


@pytest.mark.parametrize(
    ("family", "change", "says"),
    [
        ("qwen3_5", {"layer_types": ["full_attention"] * 3}, "must list 4 layer kinds"),
        ("qwen3_5", {"layer_types": ["linear_attention", "sliding_attention", "full_attention", "full_attention"]},
         "layer kind 'sliding_attention'"),
        ("nemotron_h", {"hybrid_override_pattern": "M-*X?"}, "hybrid_override_pattern"),
        ("lfm2", {"full_attn_idxs": [7]}, "full_attn_idxs"),
        ("deepseek_v3", {"kv_lora_rank": None}, "kv_lora_rank"),
        ("jamba", {"attn_layer_period": 0}, "attn_layer_period"),
        ("gemma4", {"num_kv_shared_layers": 9}, "num_kv_shared_layers"),
        ("gemma3n", {"intermediate_size": [96, "wide", 96, 96, 96]}, "intermediate_size"),
    ],
)
def test_a_bad_layer_description_is_one_line_naming_the_key(book: Rulebook, family: str, change: dict[str, Any],
                                                           says: str) -> None:
    with pytest.raises(FactError, match=says):
        facts_from_config({**_config(family), **change}, book, name=family, source="file")


def test_a_bad_config_json_on_the_command_line_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**_config("nemotron_h"), "hybrid_override_pattern": "M-"}))
    proc = run_cli("recommend", "--model", str(path), "--method", "sft", "--no-detect")
    assert proc.returncode == 2
    assert "hybrid_override_pattern" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_multimodal_qwen3_5_config_in_the_hub_cache_is_its_text_tower(book: Rulebook, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    text = {**_config("qwen3_5_moe"), "model_type": "qwen3_5_moe_text"}
    wrapper = {"architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "qwen3_5_moe",
               "text_config": text, "vision_config": {"depth": 2}, "tie_word_embeddings": False}
    monkeypatch.setenv("HF_HUB_CACHE", str(make_cache(tmp_path / "hub", "acme/qwen35-tiny", wrapper)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    facts = resolve_model("acme/qwen35-tiny", book)
    assert (facts.source, facts.family, facts.is_moe, facts.num_experts) == ("cache", "qwen3_5_moe", True, 8)
    assert facts.params_b == facts_from_config(text, book, name="t", source="file").params_b


def test_registry_counts_match_transformers_one_per_family(book: Rulebook) -> None:
    """The smallest registry entry of each layered family, built from its registry config."""
    smallest: dict[str, str] = {}
    for mid in sorted(book.models, key=lambda m: registry_model(book, m).params_b):
        fam = registry_model(book, mid).family
        # Mistral 4, Mistral Large 4 and Llama 3.2 Vision are text towers without a causal-LM class of
        # their own (tests/test_newer_families.py builds the latter two)
        towers = ("mistral4", "mistral_large4_text", "mllama_text_model")
        if "layers" in book.families.get(fam, {}) and book.models[mid]["model_type"] not in towers:
            smallest.setdefault(fam, mid)
    assert len(smallest) >= 13
    for fam, mid in smallest.items():
        cfg = entry_config(book.models[mid])
        if cfg["model_type"] == "kimi_k2":
            cfg["model_type"] = "deepseek_v3"  # Kimi K2 runs as DeepseekV3ForCausalLM
        assert registry_model(book, mid).params_b == billions(_params(_build(cfg))), (fam, mid)


def _kv_cache(book: Rulebook, model: str, seq: int) -> float:
    """The KV cache of two completions whose prompt and completion together are ``seq`` tokens."""
    job = api.job_facts(book, model=model, method="grpo", peft="lora", detect_gpu=False)
    est = estimate(book, job, {"max_seq_length": seq, "max_prompt_length": seq // 4, "max_completion_length": seq - seq // 4,
                               "prompts_per_step": 1, "num_generations": 2, "micro_batch_size": 1, "lora_rank": 8,
                               "lora_target_modules": ["q_proj"]})
    assert est.setup.seq_len == seq
    return next(i.gb for i in est.items if i.name == "KV cache (generation)") * 2**30


def test_the_kv_cache_is_kept_by_attention_layers_and_linear_layers_keep_a_fixed_state(book: Rulebook) -> None:
    facts = registry_model(book, "qwen3.5-35b-a3b")
    kinds = {k.id: k for k in facts.layer_kinds}
    full, linear = kinds["full_attention"], kinds["linear_attention"]
    assert (full.layers, linear.layers) == (10, 30) and linear.kv_per_token == 0 and linear.state > 0
    short, long = _kv_cache(book, "qwen3.5-35b-a3b", 1024), _kv_cache(book, "qwen3.5-35b-a3b", 2048)
    per_token = (long - short) / (2 * 1024 * 2)  # two completions, 16-bit
    # only the 10 full-attention layers cache keys and values; the 30 Gated DeltaNet layers keep a state
    assert per_token == 10 * 2 * facts.num_kv_heads * facts.head_dim
    assert short - 2 * 1024 * 2 * per_token == 2 * 2 * 30 * linear.state


def test_mla_caches_the_compressed_latent_and_the_rotary_key(book: Rulebook) -> None:
    entry = book.models["deepseek-v2-lite"]
    short, long = _kv_cache(book, "deepseek-v2-lite", 1024), _kv_cache(book, "deepseek-v2-lite", 2048)
    per_token = (long - short) / (2 * 1024 * 2)
    assert per_token == entry["num_hidden_layers"] * (entry["kv_lora_rank"] + entry["qk_rope_head_dim"])


def test_maverick_counts_its_dense_layers_and_scout_none(book: Rulebook) -> None:
    for mid, moe in (("llama-4-maverick-17b-128e", 24), ("llama-4-scout-17b-16e", 48)):
        kinds = {k.id: k.layers for k in registry_model(book, mid).layer_kinds}
        assert kinds.get("moe") == moe and kinds.get("mlp", 0) == 48 - moe


# What a config.json may hold in a key the descriptions read: odd numbers, lists, strings, nulls.
ODD = st.one_of(st.integers(-2, 70), st.sampled_from([0, 10**13, 1e300, float("nan"), float("inf"), 2.5, True]),
                st.lists(st.one_of(st.integers(-1, 5), st.sampled_from(["conv", "mamba", "dense", "x"])), max_size=5),
                st.sampled_from(["auto", "M-*E", "", "full_attention"]), st.none(), st.dictionaries(
                    st.sampled_from(["num_heads", "head_dim", "full_attn_layers", "kda_layers"]),
                    st.one_of(st.integers(0, 8), st.lists(st.integers(0, 5), max_size=3)), max_size=3))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=st.sampled_from(sorted(TINY)), data=st.data())
def test_odd_config_values_give_facts_or_a_one_line_error(book: Rulebook, family: str, data: st.DataObject) -> None:
    cfg = _config(family)
    keys = sorted({*cfg, "layer_types", "hybrid_override_pattern", "linear_attn_config", "q_lora_rank",
                   "time_step_rank", "mlp_layer_types", "full_attention_interval", "moe_latent_size"} - {"model_type"})
    changes = data.draw(st.dictionaries(st.sampled_from(keys), ODD, min_size=1, max_size=3))
    try:
        facts = facts_from_config({**cfg, **changes}, book, name=family, source="file")
    except FactError as exc:
        assert "\n" not in str(exc)
    else:
        assert facts.params_b >= 0 and count(knowledge(book), facts).total >= 0


def test_gemma_kv_sharing_layers_keep_no_cache_and_build_no_keys(book: Rulebook) -> None:
    facts = registry_model(book, "gemma-4-e2b")
    kinds = {k.id: k for k in facts.layer_kinds}
    # 35 layers: the last 20 reuse the keys and values of layers 0-14 (3 of them full, 4 sliding first)
    assert (kinds["sliding_kv"].layers, kinds["full_kv"].layers, kinds["kv_shared"].layers) == (12, 3, 20)
    assert not kinds["kv_shared"].modules and kinds["kv_shared"].kv_per_token == 0
    short, long = _kv_cache(book, "gemma-4-e2b", 1024), _kv_cache(book, "gemma-4-e2b", 2048)
    per_token = (long - short) / (2 * 1024 * 2)
    # only the full layers grow with the sequence, at their own head size (global_head_dim 512); a
    # sliding one keeps its window's last 511 tokens (sliding_window 512) at head_dim 256
    assert per_token == 3 * 2 * 1 * 512
    assert short - 2 * 1024 * 2 * per_token == 2 * 2 * 12 * 2 * 1 * 256 * 511
    # the KV-sharing layers' MLPs are twice as wide (use_double_wide_mlp)
    widths = {k.id: next(m.out_features for m in k.modules if m.name == "up_proj")
              for k in facts.layer_kinds if k.id in ("mlp", "kv_shared_mlp")}
    assert widths == {"mlp": 6144, "kv_shared_mlp": 12288}


def test_gemma3n_per_layer_widths_of_a_sliced_model_are_counted_at_their_mean(book: Rulebook) -> None:
    cfg = {**_config("gemma3n"), "intermediate_size": [96, 64, 96, 64, 96]}
    facts = facts_from_config(cfg, book, name="sliced", source="file")
    real = _params(_build(cfg))
    assert facts.intermediate_size == 83  # 416 // 5
    # three matrices of hidden_size x width per layer: the mean loses under one column per layer
    assert abs(count(knowledge(book), facts).total - real) <= 3 * cfg["hidden_size"] * cfg["num_hidden_layers"]


def test_a_gemma3n_config_json_in_the_hub_cache_is_its_text_tower(book: Rulebook, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    text = _config("gemma3n")
    wrapper = {"architectures": ["Gemma3nForConditionalGeneration"], "model_type": "gemma3n", "text_config": text,
               "vision_config": {"model_type": "gemma3n_vision"}, "audio_config": {"model_type": "gemma3n_audio"}}
    monkeypatch.setenv("HF_HUB_CACHE", str(make_cache(tmp_path / "hub", "acme/gemma3n-tiny", wrapper)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    facts = resolve_model("acme/gemma3n-tiny", book)
    assert (facts.source, facts.family) == ("cache", "gemma3n")
    assert "text tower of a gemma3n model" in facts.source_detail
    assert facts.params_b == billions(_params(_build(text)))
