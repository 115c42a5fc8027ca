"""The families issue 12 left for last (rules/families.yaml, the 'newer families' section, and Falcon's
new decoder): each count equals the transformers model built on the meta device from the same config,
LoRA's trainable parameters equal peft's, and the generation cache is what each layer kind keeps
(Llama 3.2 Vision's cross-attention layers cache the image once, not per token; transformers caches
Falcon's new decoder at every query head)."""

from __future__ import annotations

from typing import Any

import pytest

from advisor.errors import FactError
from advisor.facts.model import billions, entry_config, facts_from_config, registry_model
from advisor.memory.knowledge import knowledge
from advisor.memory.shapes import count
from advisor.rulebook.load import Rulebook
from tests.test_layered import _kv_cache

SMALL = {"hidden_size": 64, "vocab_size": 128, "max_position_embeddings": 256, "num_attention_heads": 4,
         "num_key_value_heads": 2}
# mllama's token ids default to Llama 3's, past a tiny vocabulary
TOKENS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
DSA = {"num_key_value_heads": 4, "intermediate_size": 96, "moe_intermediate_size": 24, "n_routed_experts": 8,
       "num_experts_per_tok": 2, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
       "v_head_dim": 12, "n_group": 1, "topk_group": 1, "q_lora_rank": 24, "index_n_heads": 2,
       "index_head_dim": 8, "first_k_dense_replace": 1}
MIMO = {"intermediate_size": 96, "moe_intermediate_size": 24, "n_routed_experts": 8, "num_experts_per_tok": 2,
        "head_dim": 16, "v_head_dim": 8}
LARGE4 = {"intermediate_size": 96, "moe_intermediate_size": 24, "n_routed_experts": 8, "num_experts_per_tok": 2,
          "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 12, "index_n_heads": 2,
          "index_head_dim": 8, "num_key_value_heads": 4}
V4 = {"q_lora_rank": 24, "head_dim": 32, "o_groups": 2, "o_lora_rank": 12, "index_n_heads": 2, "index_head_dim": 16,
      "sliding_window": 8, "hc_mult": 2, "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 24,
      "num_key_value_heads": 1}
# One tiny config per family (and per switch of Falcon's decoder), choosing the less common branches.
TINY: dict[str, dict[str, Any]] = {
    "falcon_old_mha": {"model_type": "falcon", "num_hidden_layers": 2, "multi_query": False, "parallel_attn": False},
    "falcon_new": {"model_type": "falcon", "num_hidden_layers": 2, "new_decoder_architecture": True,
                   "num_kv_heads": 2},
    "falcon_new_one_ln": {"model_type": "falcon", "num_hidden_layers": 2, "new_decoder_architecture": True,
                          "num_kv_heads": 1, "num_ln_in_parallel_attn": 1, "bias": True, "ffn_hidden_size": 96,
                          "tie_word_embeddings": False},
    "mllama": {"model_type": "mllama_text_model", "num_hidden_layers": 5, "intermediate_size": 96,
               "cross_attention_layers": [1, 3], **TOKENS},
    "deepseek_v32": {"model_type": "deepseek_v32", "num_hidden_layers": 3, "first_k_dense_replace": 1,
                     "n_shared_experts": 2, **DSA},
    # GLM-5's layers that share an earlier indexer's top-k: listed, as a pattern, and by frequency and offset
    "glm_moe_dsa_listed": {"model_type": "glm_moe_dsa", "num_hidden_layers": 4,
                           "indexer_types": ["full", "shared", "full", "shared"], **DSA},
    "glm_moe_dsa_pattern": {"model_type": "glm_moe_dsa", "num_hidden_layers": 4, "index_topk_pattern": "FSSF", **DSA},
    "glm_moe_dsa_freq": {"model_type": "glm_moe_dsa", "num_hidden_layers": 7, "index_topk_freq": 2,
                         "index_skip_topk_offset": 4, **DSA},
    "mimo_v2_flash": {"model_type": "mimo_v2_flash", "num_hidden_layers": 7, **MIMO},
    "mistral_large4": {"model_type": "mistral_large4_text", "num_hidden_layers": 5, **LARGE4},
    # V4's default layers (2 HCA, then CSA / HCA), a release's compress_ratios, sliding-only layers by name
    "deepseek_v4": {"model_type": "deepseek_v4", "num_hidden_layers": 5, **V4},
    "deepseek_v4_ratios": {"model_type": "deepseek_v4", "num_hidden_layers": 3, "compress_ratios": [0, 4, 128],
                           "mlp_bias": True, **V4},
    "deepseek_v4_listed": {"model_type": "deepseek_v4", "num_hidden_layers": 3, **V4,
                           "layer_types": ["sliding_attention", "compressed_sparse_attention", "sliding_attention"]},
    # listed NoPE layers and indexers, a second dense layer, an explicit kv_source_layers without sharing
    "mistral_large4_listed": {"model_type": "mistral_large4_text", "num_hidden_layers": 4, "no_rope_layers": [1, 0, 0, 1],
                              "indexer_types": ["full", "shared", "full", "shared"], "first_k_dense_replace": 2,
                              "kv_source_layers": [0, 1, 2, 3], "attention_bias": True, **LARGE4},
    "mimo_v2_flash_listed": {"model_type": "mimo_v2_flash", "num_hidden_layers": 3, "attention_bias": True,
                             "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
                             "mlp_layer_types": ["sparse", "dense", "dense"], **MIMO},
}
# a text tower is built through its multimodal wrapper's causal-LM class (MllamaForCausalLM reads text_config)
WRAPPERS = {"mllama_text_model": "mllama"}
# text towers without a causal-LM class: the base model, plus the lm_head counted by hand
TOWERS = ("mistral_large4_text",)


def _build(cfg: dict[str, Any]) -> Any:
    """The causal LM on the meta device, or the bare text tower where there is none (Mistral Large 4's)."""
    import torch
    import transformers

    kwargs = {k: v for k, v in cfg.items() if k != "model_type"}
    wrapper = WRAPPERS.get(cfg["model_type"])
    conf = (transformers.AutoConfig.for_model(wrapper, text_config=cfg) if wrapper
            else transformers.AutoConfig.for_model(cfg["model_type"], **kwargs))
    with torch.device("meta"):
        if cfg["model_type"] in TOWERS:
            return transformers.AutoModel.from_config(conf)
        return transformers.AutoModelForCausalLM.from_config(conf)


def _params(model: Any) -> int:
    """Its parameters, with the untied lm_head a bare tower lacks."""
    n = sum(p.numel() for p in model.parameters())
    conf = model.config
    if conf.model_type in TOWERS and not conf.tie_word_embeddings:
        n += conf.vocab_size * conf.hidden_size
    return n


def _entry(book: Rulebook, mid: str) -> dict[str, Any]:
    return {k: v for k, v in entry_config(book.models[mid]).items() if k != "text_of"}


@pytest.mark.parametrize("name", sorted(TINY))
def test_counts_and_lora_match_transformers_and_peft(book: Rulebook, name: str) -> None:
    from peft import LoraConfig, get_peft_model

    cfg = {**SMALL, **TINY[name]}
    facts = facts_from_config(cfg, book, name=name, source="file")
    assert facts.family == cfg["model_type"].removesuffix("_text_model").removesuffix("_text") and facts.layer_kinds
    model = _build(cfg)
    real = _params(model)
    targets = [*facts.attention_modules, *facts.mlp_modules]
    c = count(knowledge(book), facts, targets, 4)
    assert c.total == real and billions(real) == facts.params_b
    reachable = [t for t in targets if t not in c.unmatched_targets]
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=reachable))
    assert c.lora == sum(p.numel() for p in lora.parameters() if p.requires_grad)


NEW_ENTRIES = ["llama-3.2-11b-vision", "llama-3.2-90b-vision", "falcon-40b", "falcon-180b", "deepseek-v3.2-exp",
               "glm-5", "mimo-v2-flash", "mistral-large-4", "deepseek-v4-flash"]


@pytest.mark.parametrize("mid", [*NEW_ENTRIES, "falcon-7b"])
def test_registry_counts_match_transformers(book: Rulebook, mid: str) -> None:
    entry = _entry(book, mid)
    if entry["model_type"] in WRAPPERS:
        entry = {**entry, **TOKENS}
    real = _params(_build(entry))
    facts = registry_model(book, mid)
    assert facts.params_b == billions(real)
    assert count(knowledge(book), facts).total == real


def test_falcon_new_decoder_is_switched_by_its_keys(book: Rulebook) -> None:
    old, new = registry_model(book, "falcon-7b"), registry_model(book, "falcon-40b")
    assert (old.num_kv_heads, new.num_kv_heads) == (1, 8)
    # one LayerNorm (weight and bias) per old layer, ln_attn and ln_mlp per new one
    assert (old.layer_norms, new.layer_norms) == (2 * 4544, 4 * 8192)
    one = facts_from_config({**SMALL, **TINY["falcon_new_one_ln"]}, book, name="x", source="file")
    assert one.layer_norms == 2 * SMALL["hidden_size"]


def test_falcon_new_decoder_caches_keys_and_values_at_every_query_head(book: Rulebook) -> None:
    for mid, heads in (("falcon-7b", 1), ("falcon-40b", 128)):  # multi_query: one; the new decoder: all 128
        entry = book.models[mid]
        short, long = _kv_cache(book, mid, 1024), _kv_cache(book, mid, 2048)
        per_token = (long - short) / (2 * 1024 * 2)  # two completions, 16-bit
        assert per_token == entry["num_hidden_layers"] * 2 * heads * (entry["hidden_size"] // entry["num_attention_heads"])


def test_llama_vision_caches_text_tokens_in_self_attention_and_the_image_once(book: Rulebook) -> None:
    facts = registry_model(book, "llama-3.2-11b-vision")
    kinds = {k.id: k for k in facts.layer_kinds}
    cross, self_attn = kinds["cross_attention"], kinds["self_attention"]
    assert (cross.layers, self_attn.layers) == (8, 32) and cross.kv_per_token == 0
    short, long = _kv_cache(book, "llama-3.2-11b-vision", 1024), _kv_cache(book, "llama-3.2-11b-vision", 2048)
    per_token = (long - short) / (2 * 1024 * 2)
    assert per_token == 32 * 2 * 8 * 128
    # the rest is the image's keys and values in each of the 8 cross-attention layers, per completion
    assert short - 2 * 1024 * 2 * per_token == 2 * 2 * 8 * (2 * 8 * 128 * 6404)


def test_a_llama_vision_config_json_counts_its_text_tower(book: Rulebook) -> None:
    text = {**_entry(book, "llama-3.2-11b-vision"), **TOKENS}
    wrapper = {"model_type": "mllama", "architectures": ["MllamaForConditionalGeneration"], "text_config": text,
               "vision_config": {"model_type": "mllama_vision_model", "image_size": 560}}
    facts = facts_from_config(wrapper, book, name="v", source="file", detail="config.json")
    assert (facts.family, facts.params_b) == ("mllama", registry_model(book, "llama-3.2-11b-vision").params_b)
    assert "text tower of a mllama model" in facts.describe_source()


def test_the_sparse_attention_indexer_caches_its_keys_beside_the_mla_latent(book: Rulebook) -> None:
    for mid in ("deepseek-v3.2-exp", "glm-5"):
        entry = book.models[mid]
        short, long = _kv_cache(book, mid, 1024), _kv_cache(book, mid, 2048)
        per_token = (long - short) / (2 * 1024 * 2)
        latent = entry["kv_lora_rank"] + entry["qk_rope_head_dim"]
        assert per_token == entry["num_hidden_layers"] * (latent + entry["index_head_dim"]), mid


def test_glm5_layers_sharing_a_top_k_build_no_indexer_and_cache_no_index_keys(book: Rulebook) -> None:
    cfg = {**SMALL, **TINY["glm_moe_dsa_freq"]}
    kinds = {k.id: k for k in facts_from_config(cfg, book, name="g", source="file").layer_kinds}
    # transformers: full where max(i - 4 + 1, 0) % 2 == 0, i.e. layers 0-3 and 5
    assert (kinds["indexer"].layers, kinds["shared_topk"].layers) == (5, 2)
    assert not kinds["shared_topk"].modules and kinds["shared_topk"].kv_per_token == 0
    conf = _build(cfg).config
    assert conf.indexer_types.count("full") == 5


def test_mimo_sliding_layers_keep_only_their_window(book: Rulebook) -> None:
    facts = registry_model(book, "mimo-v2-flash")
    kinds = {k.id: k for k in facts.layer_kinds}
    # layer 0 and every 6th of 48 are full attention (MiMoV2FlashConfig)
    assert (kinds["full"].layers, kinds["sliding"].layers) == (9, 39)
    short, long = _kv_cache(book, "mimo-v2-flash", 1024), _kv_cache(book, "mimo-v2-flash", 2048)
    per_token = (long - short) / (2 * 1024 * 2)
    assert per_token == 9 * 4 * (192 + 128)  # only the full layers grow with the sequence
    # a sliding layer keeps 128 tokens (sliding_window 129 - 1) at twice the KV heads
    assert short - 2 * 1024 * 2 * per_token == 2 * 2 * 39 * 128 * 8 * (192 + 128)


def test_mistral_large4_nope_layers_cache_no_rotary_key_and_kv_sharing_is_refused(book: Rulebook) -> None:
    entry = book.models["mistral-large-4"]
    kinds = {k.id: k for k in registry_model(book, "mistral-large-4").layer_kinds}
    assert (kinds["rope"].layers, kinds["nope"].layers) == (54, 18)  # every 4th of 72 is NoPE
    short, long = _kv_cache(book, "mistral-large-4", 1024), _kv_cache(book, "mistral-large-4", 2048)
    per_token = (long - short) / (2 * 1024 * 2)
    assert per_token == 72 * (entry["kv_lora_rank"] + entry["index_head_dim"]) + 54 * entry["qk_rope_head_dim"]
    shared = {**SMALL, **TINY["mistral_large4_listed"], "kv_source_layers": [0, 0, 2, 2]}
    with pytest.raises(FactError, match="kv_source_layers"):
        facts_from_config(shared, book, name="m", source="file")


def test_deepseek_v4_caches_compressed_entries_per_token_and_each_window_once(book: Rulebook) -> None:
    facts = registry_model(book, "deepseek-v4-flash")
    kinds = {k.id: k.layers for k in facts.layer_kinds}
    assert (kinds["sliding"], kinds["csa"], kinds["hca"]) == (2, 21, 20)
    short, long = _kv_cache(book, "deepseek-v4-flash", 1024), _kv_cache(book, "deepseek-v4-flash", 2048)
    per_token = (long - short) / (2 * 1024 * 2)
    # CSA: a 512-wide entry and the indexer's 128-wide key every 4 tokens; HCA: a 512-wide entry every 128
    assert per_token == 21 * (512 + 128) // 4 + 20 * 512 // 128
    # a 127-token window per layer, keys apart from values only in the sliding-only layers; each CSA
    # layer's overlap state (4 tokens of the compressor's and indexer's keys, 16-bit, and gates, fp32)
    assert short - 2 * 1024 * 2 * per_token == 2 * 2 * (127 * 512 * (2 * 2 + 41) + 21 * 3 * 4 * (512 + 128))
    # transformers' own default pattern agrees with the description's (V4-Pro's: 2 HCA layers first)
    cfg = {**SMALL, **TINY["deepseek_v4"]}
    layer_types = _build(cfg).config.layer_types
    described = {k.id: k.layers for k in facts_from_config(cfg, book, name="v4", source="file").layer_kinds}
    assert (described["hca"], described["csa"]) == (layer_types.count("heavily_compressed_attention"),
                                                    layer_types.count("compressed_sparse_attention"))
