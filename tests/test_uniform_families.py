"""The uniform-layer families issue 12 added (rules/families.yaml, uniform section): each registry
entry's count equals the transformers model built on the meta device from the config.json keys the
family itself uses (GPT-J's n_embd, MPT's d_model, DBRX's nested attn_config / ffn_config), and a
multimodal model's text tower is counted as such and says so."""

from __future__ import annotations

from typing import Any

import pytest

from advisor.facts.model import billions, count_parameters, entry_config, facts_from_config, registry_model
from advisor.memory.knowledge import knowledge
from advisor.memory.shapes import count
from advisor.rulebook.load import Rulebook

# One registry entry per family of the uniform section, and the text towers of known families.
MODELS = ["dbrx", "gpt-j-6b", "mpt-7b", "minimax-m2", "seed-oss-36b", "command-r7b", "apertus-8b", "afm-4.5b",
          "nemotron-mini-4b", "olmo-3-7b", "gpt2", "cerebras-gpt-1.3b", "orpheus-3b-0.1",
          "ministral-3-3b", "glm-4.6v-flash", "llava-1.5-7b", "internvl3.5-8b", "paddleocr-vl",
          "pixtral-12b", "voxtral-mini-3b", "smolvlm2-2.2b", "xgen-7b-8k"]


def native_config(book: Rulebook, mid: str) -> dict[str, Any]:
    """The registry entry written with the keys the family's config.json uses (its config_keys'
    first spelling, nested where the path is dotted), as the model's own config.json has them."""
    entry = {k: v for k, v in entry_config(book.models[mid]).items() if k != "text_of"}
    fam = book.families[registry_model(book, mid).family]
    out: dict[str, Any] = {}
    for key, value in entry.items():
        paths = fam.get("config_keys", {}).get(key)
        if paths:
            *parents, leaf = paths[0].split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        elif key in fam.get("derived_keys", {}):  # MPT: expansion_ratio x d_model stands for it
            factors = fam["derived_keys"][key]
            known = [f for f in factors if isinstance(f, int) or f in entry]
            unknown = [f for f in factors if f not in known]
            rest = 1
            for f in known:
                rest *= f if isinstance(f, int) else entry[f]
            out[unknown[0]] = value // rest
        else:
            out[key] = value
    return out


def built(model_type: str, cfg: dict[str, Any]) -> tuple[Any, int]:
    """The model on the meta device (None for a bare text tower) and its parameter count."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    if model_type == "dbrx":  # DbrxAttention reads it; DBRX's config.json sets 500000 (no count depends on it)
        cfg = {**cfg, "attn_config": {**cfg["attn_config"], "rope_theta": 500000}}
    conf = AutoConfig.for_model(model_type, **cfg)
    with torch.device("meta"):
        try:
            model = AutoModelForCausalLM.from_config(conf)
        except ValueError:  # a text tower with no causal-LM class of its own (glm4v_text): add the head
            model = AutoModel.from_config(conf)
            head = 0 if cfg.get("tie_word_embeddings") else cfg["vocab_size"] * cfg["hidden_size"]
            return None, sum(p.numel() for p in model.parameters()) + head
    return model, sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("mid", MODELS)
def test_count_equals_the_model_built_from_its_own_config_keys(book: Rulebook, mid: str) -> None:
    pytest.importorskip("transformers")
    cfg = native_config(book, mid)
    model_type = cfg.pop("model_type")
    model, n = built(model_type, cfg)
    facts = facts_from_config({"model_type": model_type, **cfg}, book, name=mid, source="file")
    assert facts.family == registry_model(book, mid).family != "unknown"
    assert billions(n) == facts.params_b == registry_model(book, mid).params_b
    # the memory model's module shapes give the same total, and peft the same LoRA parameters
    targets = [*facts.attention_modules, *facts.mlp_modules]
    c = count(knowledge(book), facts, targets, 8)
    assert c.total == n
    if model is not None:
        from peft import LoraConfig, get_peft_model

        reachable = [t for t in targets if t not in c.unmatched_targets]  # fused 3-D experts take none
        lora = get_peft_model(model, LoraConfig(r=8, target_modules=reachable))
        assert c.lora == sum(p.numel() for p in lora.parameters() if p.requires_grad)


def test_native_keys_are_read_not_required_in_the_standard_spelling(book: Rulebook) -> None:
    dbrx = native_config(book, "dbrx")
    assert "hidden_size" not in dbrx and dbrx["attn_config"] == {"kv_n_heads": 8}
    facts = facts_from_config(dbrx, book, name="dbrx", source="file")
    assert (facts.hidden_size, facts.num_kv_heads, facts.num_experts, facts.experts_per_token) == (6144, 8, 16, 4)
    assert facts.max_position_embeddings == 32768  # max_seq_len
    mpt = native_config(book, "mpt-7b")
    assert mpt["expansion_ratio"] == 4 and "intermediate_size" not in mpt
    assert facts_from_config(mpt, book, name="mpt", source="file").intermediate_size == 4 * 4096


def test_a_text_tower_says_the_encoder_is_not_counted(book: Rulebook) -> None:
    text = native_config(book, "ministral-3-3b")
    wrapped = {"model_type": "mistral3", "text_config": text, "vision_config": {"hidden_size": 1024}}
    facts = facts_from_config(wrapped, book, name="m", source="file", detail="config.json")
    assert facts.family == "ministral3"
    assert "text tower of a mistral3 model" in facts.describe_source() and "not counted" in facts.describe_source()
    assert "text tower of a mistral3 model" in registry_model(book, "ministral-3-3b").describe_source()
    assert "text tower" not in registry_model(book, "dbrx").describe_source()


@pytest.mark.parametrize(("mid", "wrapper", "text_type"), [("paddleocr-vl", "paddleocr_vl", "paddleocr_vl_text"),
                                                          ("glm-4.6v-flash", "glm4v", "glm4v_text")])
def test_a_wrapper_config_counts_its_text_tower_as_the_registry_does(book: Rulebook, mid: str, wrapper: str,
                                                                     text_type: str) -> None:
    text = {**native_config(book, mid), "model_type": text_type}
    facts = facts_from_config({"model_type": wrapper, "text_config": text}, book, name=mid, source="file")
    assert (facts.family, facts.params_b) == (registry_model(book, mid).family, registry_model(book, mid).params_b)
    assert f"text tower of a {wrapper} model" in facts.describe_source()


# Families no registry entry uses yet: a small config.json of each, built and counted the same way.
SMALL = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
         "intermediate_size": 384, "vocab_size": 1000, "max_position_embeddings": 512, "tie_word_embeddings": True}


@pytest.mark.parametrize(("model_type", "extra"), [
    ("granite", {}), ("granitemoe", {"num_local_experts": 4, "num_experts_per_tok": 2}),
    ("hunyuan_v1_dense", {"head_dim": 32}), ("cohere", {}), ("ernie4_5", {"head_dim": 32}),
])
def test_a_family_without_a_registry_entry_counts_its_config(book: Rulebook, model_type: str,
                                                             extra: dict[str, Any]) -> None:
    pytest.importorskip("transformers")
    cfg = {**SMALL, **extra}
    model, n = built(model_type, cfg)
    facts = facts_from_config({"model_type": model_type, **cfg}, book, name=model_type, source="file")
    c = count(knowledge(book), facts, [*facts.attention_modules, *facts.mlp_modules], 8)
    assert facts.family != "unknown"
    assert count_parameters({"model_type": model_type, **cfg}, book.families[facts.family], model_type)[0] == n == c.total
    from peft import LoraConfig, get_peft_model

    reachable = [t for t in [*facts.attention_modules, *facts.mlp_modules] if t not in c.unmatched_targets]
    lora = get_peft_model(model, LoraConfig(r=8, target_modules=reachable))
    assert c.lora == sum(p.numel() for p in lora.parameters() if p.requires_grad)


def test_every_text_tower_names_a_real_multimodal_model_type(book: Rulebook) -> None:
    transformers = pytest.importorskip("transformers")
    wrappers = {e["text_of"] for e in book.models.values() if "text_of" in e}
    assert wrappers and wrappers <= set(transformers.models.auto.configuration_auto.CONFIG_MAPPING)
    for wrapper in wrappers:  # each is a wrapper whose config nests the language model in text_config
        assert "text_config" in transformers.AutoConfig.for_model(wrapper).to_dict(), wrapper
