"""GRPO / PPO's generation KV cache, family by family, against transformers' own DynamicCache: a real
prefill longer than the window through a tiny model of each family, and the bytes its cache holds
equal the estimate's KV cache. Sliding-window and chunked layers keep only their window's last
window - 1 tokens (DynamicSlidingWindowLayer), KV-sharing layers none (DummyLayer), the rest every
token; a window switched off (Mistral v0.3's null, Qwen's use_sliding_window false) keeps every token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from advisor import api
from advisor.memory import estimate
from advisor.rulebook.load import Rulebook
from tests.test_layered import TINY as LAYERED
from tests.test_newer_families import TINY as NEWER

SMALL = {"hidden_size": 64, "intermediate_size": 96, "vocab_size": 128, "max_position_embeddings": 256,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 4,
         "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
EXPERTS = {"num_local_experts": 4, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 24}
QWEN = {"use_sliding_window": True, "sliding_window": 8}
BATCH, PROMPT, COMPLETION = 2, 24, 16  # 40 tokens: five windows of 8
# Each: the config.json (SMALL under it) and whether some layer keeps only a window (so that a family
# which should slide and does not fails, not only one that slides too much).
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "llama": ({"model_type": "llama"}, False),
    "gemma2": ({"model_type": "gemma2", "sliding_window": 8}, True),
    "gemma3": ({"model_type": "gemma3_text", "sliding_window": 8, "sliding_window_pattern": 3,
                "num_hidden_layers": 7}, True),
    "gpt_oss": ({"model_type": "gpt_oss", "sliding_window": 8, **EXPERTS}, True),
    "olmo3": ({"model_type": "olmo3", "sliding_window": 8, "num_hidden_layers": 5}, True),
    "olmo3_listed": ({"model_type": "olmo3", "sliding_window": 8,
                      "layer_types": ["full_attention", "sliding_attention"] * 2}, True),
    "olmo2": ({"model_type": "olmo2"}, False),
    "cohere2": ({"model_type": "cohere2", "sliding_window": 8, "num_hidden_layers": 5}, True),
    "cohere": ({"model_type": "cohere"}, False),
    "mistral_v0.1": ({"model_type": "mistral", "sliding_window": 8}, True),
    "mistral_null": ({"model_type": "mistral", "sliding_window": None}, False),
    "mixtral": ({"model_type": "mixtral", "sliding_window": 8, **EXPERTS}, True),
    "phi3": ({"model_type": "phi3", "sliding_window": 8}, True),
    "starcoder2": ({"model_type": "starcoder2", "sliding_window": 8}, True),
    "ministral3": ({"model_type": "ministral3", "sliding_window": 8}, True),
    "qwen2": ({"model_type": "qwen2", "max_window_layers": 1, **QWEN}, True),
    "qwen2_off": ({"model_type": "qwen2", "use_sliding_window": False, "sliding_window": 8}, False),
    "qwen3": ({"model_type": "qwen3", "max_window_layers": 2, **QWEN}, True),
    "qwen2_moe": ({"model_type": "qwen2_moe", "max_window_layers": 3, "shared_expert_intermediate_size": 40,
                   **EXPERTS, **QWEN}, True),
    "qwen3_moe": ({"model_type": "qwen3_moe", **EXPERTS, **QWEN}, True),
    "smollm3": ({"model_type": "smollm3", **QWEN}, True),
    "llama4": ({**LAYERED["llama4"], "attention_chunk_size": 8}, True),
    "llama4_unchunked": ({**LAYERED["llama4"], "attention_chunk_size": None}, False),
    "gemma3n": ({**LAYERED["gemma3n"], "sliding_window": 8}, True),
    "gemma4": ({**LAYERED["gemma4"], "sliding_window": 8}, True),
    "gemma4_unified": ({**LAYERED["gemma4_unified"], "sliding_window": 8}, True),
    "mimo_v2_flash": ({**NEWER["mimo_v2_flash"], "sliding_window": 8}, True),
    # compressed entries every 4 (CSA) and 8 (HCA) tokens, 40 a multiple of both (no part-filled buffer)
    "deepseek_v4": ({**NEWER["deepseek_v4"], "compress_rate_hca": 8}, True),
    "deepseek_v4_ratios": ({**NEWER["deepseek_v4_ratios"], "compress_rate_hca": 8}, True),
    "deepseek_v4_listed": ({**NEWER["deepseek_v4_listed"], "compress_rate_hca": 8}, True),
}


def _kv_estimate(book: Rulebook, path: Path) -> float:
    job = api.job_facts(book, model=str(path), method="grpo", peft="full", detect_gpu=False)
    rec = api.recommend(book=book, model=str(path), method="grpo", peft="full", detect_gpu=False)
    params = {**{n: pv.value for n, pv in rec.parameters.items()}, "micro_batch_size": 1,
              "effective_batch_size": BATCH, "max_prompt_length": PROMPT, "max_completion_length": COMPLETION,
              "use_vllm": False}
    item = next(i for i in estimate(book, job, params).items if i.name == "KV cache (generation)")
    return item.gb * 2**30


@pytest.mark.parametrize("case", list(CASES))
def test_the_generation_kv_cache_equals_transformers_dynamic_cache(book: Rulebook, tmp_path: Path,
                                                                   case: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

    shape, slides = CASES[case]
    cfg = {**SMALL, **shape}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    predicted = _kv_estimate(book, path)

    conf = AutoConfig.for_model(cfg["model_type"], **{k: v for k, v in cfg.items() if k != "model_type"})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(conf, dtype=torch.bfloat16).eval()
    past = DynamicCache(config=conf)
    tokens = PROMPT + COMPLETION
    with torch.no_grad():
        # ids below every table's size (Gemma's per-layer embeddings have vocab_size_per_layer_input rows)
        ids = torch.randint(3, min(cfg["vocab_size"], cfg.get("vocab_size_per_layer_input", cfg["vocab_size"])),
                            (BATCH, tokens))
        model(input_ids=ids, past_key_values=past, use_cache=True)
    held = sum(t.numel() * t.element_size() for t in _cached(past))
    assert held > 0
    # a window shows as a cached length below the sequence's, in some layer or in none
    assert any(layer.keys.shape[-2] < tokens for layer in past.layers if layer.keys is not None) == slides
    assert predicted == pytest.approx(held)


def _cached(past: Any) -> list[Any]:
    """Every tensor the cache's layers hold, each once: keys and values, and DeepSeek-V4's compressed
    entries and overlap state in dicts (its keys are its values: one tensor)."""
    import torch

    found: dict[int, Any] = {}
    for layer in past.layers:
        for value in vars(layer).values():
            for t in value.values() if isinstance(value, dict) else [value]:
                if isinstance(t, torch.Tensor) and t.dim() >= 2:
                    found.setdefault(t.data_ptr(), t)
    return list(found.values())


def test_every_registry_models_windows_are_the_ones_transformers_caches(book: Rulebook) -> None:
    """Per registry model: how many layers keep a window, and which, as DynamicCache(config) builds
    them from the same config.json (no forward pass: the layer classes and their windows)."""
    import collections

    # DeepSeek-V4 registers its own cache layers on import; its sliding-only ones are counted here
    import transformers.models.deepseek_v4.modeling_deepseek_v4  # noqa: F401
    from transformers import AutoConfig, DynamicCache
    from transformers.cache_utils import DynamicSlidingWindowLayer

    from advisor.facts.model import entry_config, registry_model

    checked = 0
    for mid, entry in book.models.items():
        cfg = {k: v for k, v in entry_config(entry).items() if k != "text_of"}
        model_type = cfg.pop("model_type")
        try:
            conf = AutoConfig.for_model(model_type, **cfg)
            layers = DynamicCache(config=conf).layers
        except ValueError:  # no transformers class: Qwen v1, Kimi K2
            continue
        # DeepSeek-V4's compressed layers subclass it, their windows a fixed state (the prefill test above)
        windows = collections.Counter(layer.sliding_window for layer in layers
                                      if type(layer) is DynamicSlidingWindowLayer)
        facts = registry_model(book, mid)
        described = collections.Counter({facts.sliding_window: facts.sliding_layers} if facts.sliding_layers else {})
        for kind in facts.layer_kinds:
            if kind.window and kind.kv_per_token:
                described[kind.window] += kind.layers
        assert described == windows, mid
        checked += 1
    assert checked > 100
