from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from advisor.errors import FactError, RuleFileError
from advisor.facts.hardware import detect_nvidia, lookup_gpu, resolve_gpu
from advisor.facts.model import billions, registry_model, resolve_model
from advisor.facts.task import TaskFacts, parse_count
from advisor.rulebook.load import Rulebook, load_rulebook

LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
    "max_position_embeddings": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}


def test_registry_has_the_common_models(book: Rulebook) -> None:
    assert len(book.models) >= 20
    for alias in ("llama-8b", "llama-3.1-70b", "llama-3.2-1b", "mistral-7b", "mixtral-8x7b", "qwen2.5-7b",
                  "qwen3-8b", "qwen2.5-72b", "gemma-2-9b", "phi-3-mini"):
        resolve_model(alias, book)


def test_aliases_are_unique(book: Rulebook) -> None:
    seen: dict[str, str] = {}
    for mid, entry in book.models.items():
        for name in [mid, *entry.get("aliases", [])]:
            key = name.lower()
            assert key not in seen or seen[key] == mid, f"{name} names both {seen.get(key)} and {mid}"
            seen[key] = mid


def _published_tolerance(published: float, rel: float = 0.005) -> float:
    """0.5%, or half a unit of the last digit a card writes when it rounds more coarsely ("1.7B")."""
    digits = len(repr(float(published)).split(".")[1].rstrip("0"))
    return max(rel * published, 0.5 * 10 ** -digits)


def test_parameter_counts_match_published_sizes(book: Rulebook) -> None:
    """The architecture count agrees with each entry's published size within 0.5% (or the card's rounding)."""
    checked = 0
    for mid, entry in book.models.items():
        facts = registry_model(book, mid)
        # An "active" count has no one definition (with or without the embedding, the router): 2% there.
        for key, counted, rel in (("published_params_b", facts.params_b, 0.005),
                                  ("published_active_params_b", facts.active_params_b, 0.02)):
            if key in entry:
                assert counted == pytest.approx(entry[key], abs=_published_tolerance(entry[key], rel)), (mid, key)
                checked += 1
    assert checked >= 80


@pytest.mark.parametrize(
    ("alias", "total", "active"),
    [
        # Exact counts from the transformers implementations (sum of parameter numels).
        ("llama-3.1-8b", 8_030_261_248, 8_030_261_248),
        ("mixtral-8x7b", 46_702_792_704, 12_879_925_248),
        ("llama-3.2-1b", 1_235_814_400, 1_235_814_400),
    ],
)
def test_exact_parameter_counts(book: Rulebook, alias: str, total: int, active: int) -> None:
    facts = resolve_model(alias, book)
    assert facts.params_b == billions(total)
    assert facts.active_params_b == billions(active)


def test_config_json_file_and_directory_agree_with_registry(book: Rulebook, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    from_dir = resolve_model(str(tmp_path), book)
    from_file = resolve_model(str(tmp_path / "config.json"), book)
    registry = resolve_model("llama-8b", book)
    assert from_dir.params_b == from_file.params_b == registry.params_b
    assert from_dir.family == "llama" and from_dir.calibrated
    assert from_dir.linear_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_multimodal_text_config(book: Rulebook, tmp_path: Path) -> None:
    cfg = {"model_type": "llava", "text_config": {**LLAMA_8B}, "vision_config": {"hidden_size": 1024}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert resolve_model(str(tmp_path), book).params_b == pytest.approx(8.03, abs=0.01)


def test_unknown_family_is_not_guessed(book: Rulebook, tmp_path: Path) -> None:
    cfg = {**LLAMA_8B, "model_type": "brand_new_arch"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    facts = resolve_model(str(tmp_path), book)
    assert facts.family == "unknown" and not facts.calibrated
    assert "model.linear_modules" not in facts.as_facts()


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("{not json", r"config\.json: not valid JSON: .* line 1"),
        ("[1, 2]", r"config\.json: a config\.json must hold a JSON object"),
        (json.dumps({k: v for k, v in LLAMA_8B.items() if k != "hidden_size"}), r"config\.json: key 'hidden_size' is missing"),
        (json.dumps({**LLAMA_8B, "num_hidden_layers": "32"}), r"key 'num_hidden_layers' must be a positive integer, got '32'"),
        (json.dumps({**LLAMA_8B, "max_position_embeddings": None}), r"key 'max_position_embeddings' is missing"),
    ],
)
def test_malformed_config_json(book: Rulebook, tmp_path: Path, content: str, pattern: str) -> None:
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(FactError, match=pattern):
        resolve_model(str(tmp_path), book)


def test_directory_without_config(book: Rulebook, tmp_path: Path) -> None:
    with pytest.raises(FactError, match="no config.json here"):
        resolve_model(str(tmp_path), book)


def test_unknown_model_lists_closest_aliases(book: Rulebook) -> None:
    with pytest.raises(FactError) as err:
        resolve_model("lama-8b", book)
    assert "unknown model 'lama-8b'" in str(err.value)
    assert "llama-8b" in str(err.value)


def test_hub_ids_resolve_through_the_registry(book: Rulebook) -> None:
    assert resolve_model("meta-llama/Llama-3.1-8B", book).name == resolve_model("llama-8b", book).name
    mirror = resolve_model("NousResearch/Meta-Llama-3-8B", book)
    assert mirror.name == "llama-3-8b" and mirror.source == "registry"
    assert "matched by the repo name" in mirror.source_detail
    with pytest.raises(FactError, match="unknown model"):
        resolve_model("someone/totally-new-model", book)


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("Tesla T4", "t4"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA A10G", "a10g"),
        ("Tesla V100-SXM2-16GB", "v100"),
        ("NVIDIA GeForce RTX 5060 Ti", "rtx-5060-ti-16gb"),
    ],
)
def test_gpu_names_as_nvidia_smi_reports_them(book: Rulebook, reported: str, expected: str) -> None:
    entry = lookup_gpu(book, reported, fuzzy=True)
    assert entry is not None and entry["id"] == expected


def test_unknown_gpu(book: Rulebook) -> None:
    with pytest.raises(FactError, match="unknown GPU 'h1000'"):
        resolve_gpu(book, name="h1000", memory_gb=None, count=None)


def test_a_name_two_cards_share_is_asked_about_not_guessed(book: Rulebook) -> None:
    """"a100" is an A100 40GB or 80GB: sizing for the 80 GB card would run the 40 GB one out of memory."""
    from advisor.facts.hardware import shared_gpu_names

    assert shared_gpu_names(book)["a100"] == ["a100-80gb", "a100-40gb"]
    with pytest.raises(FactError, match=r"GPU 'A100' is sold with 80 GB or 40 GB: say which") as err:
        resolve_gpu(book, name="A100", memory_gb=None, count=None)
    assert "--gpu a100-80gb or --gpu a100-40gb" in str(err.value.hint)
    assert resolve_gpu(book, name="a100-40", memory_gb=None, count=None).name == "a100-40gb"
    entry = lookup_gpu(book, "NVIDIA A100-SXM4-40GB", fuzzy=True)  # nvidia-smi names the size
    assert entry is not None and entry["id"] == "a100-40gb"


def test_gpu_flags_validate(book: Rulebook) -> None:
    with pytest.raises(FactError, match="--gpus"):
        resolve_gpu(book, name="h100", memory_gb=None, count=0)
    with pytest.raises(FactError, match="--gpu-mem"):
        resolve_gpu(book, name=None, memory_gb=-3, count=None)


def _fake_nvidia_smi(tmp_path: Path, output: str, code: int = 0) -> None:
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_detects_gpus_through_nvidia_smi(book: Rulebook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for the nvidia-smi binary (the thing under test is our reading of its output).
    _fake_nvidia_smi(tmp_path, "NVIDIA A100-SXM4-80GB, 81920, 8.0\nNVIDIA A100-SXM4-80GB, 81920, 8.0")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    gpu = detect_nvidia(book)
    assert gpu is not None
    # Capacity is nvidia-smi's MiB / 1024 exactly; the stated size (the batch table's key) is the registry's.
    assert gpu.count == 2 and gpu.bf16 is True and gpu.usable_gib == 80.0 and gpu.memory_gb == 80
    resolved = resolve_gpu(book, name=None, memory_gb=None, count=None)
    assert resolved.source.startswith("nvidia-smi") and "a100-80gb" in resolved.source
    assert resolved.as_facts()["gpu.usable_gib"] == 80.0


@pytest.mark.parametrize(
    ("reported", "usable", "stated"),
    [
        ("NVIDIA H100 80GB HBM3, 81559, 9.0", 81559 / 1024, 80),
        ("NVIDIA L4, 23034, 8.9", 23034 / 1024, 24),
        # Not in the registry: the stated size is taken as the reported memory in decimal GB.
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition, 97887, 12.0", 97887 / 1024, 102.6),
        # The fuzzy name match finds the 16 GB V100, but the board reports 32 GiB: not that entry's size.
        ("Tesla V100-PCIE-32GB, 32768, 7.0", 32.0, 34.4),
    ],
)
def test_detected_capacity_is_mib_over_1024(book: Rulebook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            reported: str, usable: float, stated: float) -> None:
    _fake_nvidia_smi(tmp_path, reported)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    gpu = detect_nvidia(book)
    assert gpu is not None and gpu.usable_gib == usable and gpu.memory_gb == pytest.approx(stated)


def test_registry_gpus_carry_their_reported_capacity(book: Rulebook) -> None:
    for gid, entry in book.gpus.items():
        assert entry.get("usable_mib") and entry.get("usable_source"), gid
        # A board never reports more than it is sold with (detection relies on it to reject a wrong match).
        assert entry["usable_mib"] / 1024 <= entry["memory_gb"], gid
    h100 = resolve_gpu(book, name="h100", memory_gb=None, count=None, detect=False)
    assert h100.memory_gb == 80 and h100.usable_gib == 81559 / 1024
    assert h100.as_facts()["gpu.usable_gib"] == 81559 / 1024


def test_gpu_mem_is_gib_usable(book: Rulebook) -> None:
    bare = resolve_gpu(book, name=None, memory_gb=24, count=None, detect=False)
    assert bare.usable_gib == 24 and bare.memory_gb == 24 and "GiB" in bare.source
    capped = resolve_gpu(book, name="h100", memory_gb=40, count=None, detect=False)  # e.g. a MIG slice
    assert capped.usable_gib == 40 and capped.name == "h100" and "--gpu-mem 40 GiB" in capped.source


def test_a_user_gpu_without_usable_mib_counts_its_stated_size_as_gib(tmp_path: Path) -> None:
    entry = {"id": "x1", "name": "X1", "memory_gb": 64, "bf16": True, "compute_capability": "9.0", "source": "team"}
    (tmp_path / "gpus.yaml").write_text(yaml.safe_dump({"gpus": [entry]}))
    book = load_rulebook([tmp_path])
    gpu = resolve_gpu(book, name="x1", memory_gb=None, count=None, detect=False)
    assert gpu.usable_gib == 64 and "stated size taken as GiB" in gpu.source
    (tmp_path / "gpus.yaml").write_text(yaml.safe_dump({"gpus": [{**entry, "usable_mib": 65000}]}))
    with pytest.raises(RuleFileError, match="usable_source"):
        load_rulebook([tmp_path])


def test_nvidia_smi_failure_means_no_gpu(book: Rulebook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", 9)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert detect_nvidia(book) is None
    gpu = resolve_gpu(book, name=None, memory_gb=None, count=None)
    assert gpu.memory_gb is None and "no GPU detected" in gpu.source


def test_pre_ampere_gpu_has_no_bf16(book: Rulebook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_nvidia_smi(tmp_path, "Tesla T4, 15360, 7.5")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    gpu = detect_nvidia(book)
    assert gpu is not None and gpu.bf16 is False


@pytest.mark.parametrize(("text", "value"), [("12000", 12000), ("12k", 12000), ("1.5M", 1_500_000), ("50_000", 50000)])
def test_parse_count(text: str, value: int) -> None:
    assert parse_count(text, "--dataset-size") == value


@pytest.mark.parametrize("text", ["lots", "-5", "0", "1.5", "12kk"])
def test_parse_count_rejects(text: str) -> None:
    with pytest.raises(FactError, match="--dataset-size"):
        parse_count(text, "--dataset-size")


def test_task_validation() -> None:
    with pytest.raises(FactError, match="--method: unknown value 'sftt'"):
        TaskFacts(method="sftt", peft="lora")
    with pytest.raises(FactError, match="--cycles"):
        TaskFacts(method="raft", peft="lora", cycles=0)


def test_gemma_config_without_tie_key_ties_like_transformers(book: Rulebook, tmp_path: Path) -> None:
    cfg = {"model_type": "gemma2", "hidden_size": 3584, "num_hidden_layers": 42, "num_attention_heads": 16,
           "num_key_value_heads": 8, "head_dim": 256, "intermediate_size": 14336, "vocab_size": 256000,
           "max_position_embeddings": 8192}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    facts = resolve_model(str(tmp_path), book)
    assert facts.tie_word_embeddings and facts.params_b == resolve_model("gemma-2-9b", book).params_b


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"num_local_experts": 8, "num_experts_per_tok": 20}, "num_experts_per_tok"),
        ({"num_attention_heads": 30}, "not divisible by num_attention_heads"),
        ({"num_key_value_heads": 3}, "does not divide num_attention_heads"),
    ],
)
def test_inconsistent_architectures_are_refused(book: Rulebook, tmp_path: Path, change: dict[str, int],
                                                pattern: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**LLAMA_8B, **change}))
    with pytest.raises(FactError, match=pattern):
        resolve_model(str(tmp_path), book)


def test_nvidia_smi_memory_na_keeps_the_gpu(book: Rulebook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Unified-memory boards and some vGPUs report memory.total as [N/A]: the GPU is there.
    _fake_nvidia_smi(tmp_path, "NVIDIA GB10, [N/A], 12.1")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    gpu = resolve_gpu(book, name=None, memory_gb=None, count=None)
    assert gpu.name == "NVIDIA GB10" and gpu.count == 1 and gpu.bf16 is True
    assert gpu.memory_gb is None and "[N/A]" in gpu.source and "--gpu-mem" in gpu.source
    facts = gpu.as_facts()
    assert facts["gpu.name"] == "NVIDIA GB10" and "gpu.memory_gb" not in facts


def test_task_words_are_matched_loosely() -> None:
    task = TaskFacts(method="GRPO", peft="QLoRA", use_case="Long_Documents", situation=" Safety ")
    assert (task.method, task.peft, task.use_case, task.situation) == ("grpo", "qlora", "long-documents", "safety")
    with pytest.raises(FactError, match="--use-case: unknown value 'novel'"):
        TaskFacts(method="sft", peft="lora", use_case="novel")


def test_flags_for_another_method_are_reported() -> None:
    task = TaskFacts(method="sft", peft="lora", situation="safety", cycles=4, sft_learning_rate=2e-4)
    flags = task.unused_flags()
    assert len(flags) == 3
    assert any(f.startswith("--situation safety does not apply to sft (only to dpo)") for f in flags)
    assert any(f.startswith("--cycles 4 does not apply to sft (only to raft)") for f in flags)
    assert TaskFacts(method="raft", peft="lora", cycles=4, sft_learning_rate=2e-4).unused_flags() == []


def test_fact_kinds_are_what_the_facts_hold(book: Rulebook) -> None:
    """A rule's conditions are checked at load against the catalogue's kinds (lt needs a number fact,
    eq a value of the fact's kind): each kind must be what the facts really carry."""
    from advisor.facts.catalogue import NAMESPACES, fact_kind
    from advisor.facts.job import job_facts

    kinds = {"number": (int, float), "flag": (bool,), "list": (list, tuple), "word": (str,)}
    seen: set[str] = set()
    for model, method in (("mixtral-8x7b", "raft"), ("llama-8b", "dpo")):
        facts = job_facts(book, model=model, method=method, gpu="h100", gpus=2, dataset_size=1000, seq_len=2048,
                          cycles=3, situation="safety", sft_lr=2e-5, detect_gpu=False).flat()
        for name, value in facts.items():
            kind = fact_kind(name)
            assert isinstance(value, kinds[kind]) and (kind == "flag") == isinstance(value, bool), (name, value, kind)
            assert name.partition(".")[2] in NAMESPACES[name.partition(".")[0]], name
            seen.add(name)
    assert len(seen) > 30


def test_a_test_models_size_is_not_rounded_to_zero(book: Rulebook) -> None:
    """examples/tiny-llama (0.34M parameters) showed as '0.0K params' and params_b 0."""
    from advisor.facts.model import resolve_model
    from tests.conftest import REPO

    facts = resolve_model(str(REPO / "examples" / "tiny-llama" / "config.json"), book)
    assert 0.0003 < facts.params_b < 0.0004 and facts.active_params_b == facts.params_b
    assert resolve_model("llama-8b", book).params_b == 8.03  # the thousandth above a million parameters


def test_a_context_of_0_is_named_as_0(tmp_path: Path, book: Rulebook) -> None:
    import json

    from advisor.errors import FactError
    from advisor.facts.model import resolve_model
    from tests.conftest import REPO

    cfg = json.loads((REPO / "examples" / "tiny-llama" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": 0}))
    with pytest.raises(FactError, match="key 'max_position_embeddings' is missing or not a plausible positive "
                                        "integer, got 0$"):
        resolve_model(str(tmp_path / "config.json"), book)
