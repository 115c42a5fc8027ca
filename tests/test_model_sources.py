"""Where model facts come from (advisor/facts/model.py MODEL_SOURCES): a path, the local Hugging
Face cache, the registry, the hub. The cache is a real hub cache layout in tmp_path; nothing here
reaches the network (HF_HUB_OFFLINE=1, or huggingface_hub serving its own cache offline)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from advisor.errors import FactError
from advisor.facts import hub
from advisor.facts.model import billions, count_parameters, entry_config, registry_model, resolve_model
from advisor.rulebook.load import Rulebook
from tests.conftest import run_cli

REPO_ID = "acme-labs/brand-new-7b"  # a hub id the registry does not know
REVISION = "0123456789abcdef0123456789abcdef01234567"
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 4,
    "num_attention_heads": 16, "num_key_value_heads": 4, "intermediate_size": 5632, "vocab_size": 32000,
    "max_position_embeddings": 4096, "tie_word_embeddings": False,
}


def make_cache(root: Path, repo_id: str = REPO_ID, config: dict[str, object] | None = None) -> Path:
    """The hub's own layout: the file lives in blobs/, the snapshot links to it, refs/main names the commit."""
    folder = root / ("models--" + repo_id.replace("/", "--"))
    (folder / "blobs").mkdir(parents=True)
    blob = folder / "blobs" / "5b1d6b0c1f0e"
    blob.write_text(json.dumps(config or CONFIG))
    snap = folder / "snapshots" / REVISION
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REVISION)
    return root


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = make_cache(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield root


def test_a_hub_id_in_the_cache_is_read_with_no_network(book: Rulebook, cache: Path) -> None:
    facts = resolve_model(REPO_ID, book)
    assert (facts.source, facts.revision, facts.hf_id) == ("cache", REVISION, REPO_ID)
    assert facts.source_detail.endswith(f"snapshots/{REVISION}/config.json")
    assert facts.family == "llama" and facts.num_layers == 4
    assert facts.params_b == billions(count_parameters(CONFIG, book.families["llama"], "x")[0])


def test_the_cache_is_found_through_hf_home_too(book: Rulebook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_cache(tmp_path / "home" / "hub")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model(REPO_ID, book).source == "cache"


def test_the_users_cached_config_beats_the_registrys_copy(book: Rulebook, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry hub id found in the cache is read from the cache: the user's own revision."""
    make_cache(tmp_path / "hub", "meta-llama/Llama-3.1-8B", {**CONFIG, "num_hidden_layers": 2})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    facts = resolve_model("meta-llama/Llama-3.1-8B", book)
    assert facts.source == "cache" and facts.num_layers == 2
    assert resolve_model("llama-8b", book).source == "registry"  # a short alias is never a hub id


def test_a_snapshot_without_config_json_falls_through(book: Rulebook, cache: Path) -> None:
    (cache / ("models--" + REPO_ID.replace("/", "--")) / "snapshots" / REVISION / "config.json").unlink()
    with pytest.raises(FactError, match="not in the Hugging Face cache"):
        resolve_model(REPO_ID, book)


def test_a_damaged_ref_is_one_line(book: Rulebook, cache: Path) -> None:
    (cache / ("models--" + REPO_ID.replace("/", "--")) / "refs" / "main").write_text("../../etc")
    with pytest.raises(FactError, match="not a revision"):
        resolve_model(REPO_ID, book)


def test_offline_and_uncached_names_the_model_and_the_way_out(book: Rulebook, cache: Path) -> None:
    with pytest.raises(FactError) as err:
        resolve_model("acme-labs/not-downloaded", book)
    text = str(err.value)
    assert "'acme-labs/not-downloaded'" in text and "HF_HUB_OFFLINE is set" in text
    assert hub.HUB_EXTRA in text and "\n" not in text


def test_recommend_uses_the_cache(tmp_path: Path) -> None:
    root = make_cache(tmp_path / "hub")
    env = {"HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1"}
    proc = run_cli("recommend", "--model", REPO_ID, "--method", "sft", "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    model = json.loads(proc.stdout)["facts"]["model"]
    assert (model["source"], model["revision"], model["hf_id"]) == ("cache", REVISION, REPO_ID)
    text = run_cli("recommend", "--model", REPO_ID, "--method", "sft", env={**env, "COLUMNS": "1000"})
    shown = text.stdout  # wide enough that the model line does not wrap
    assert f"[cache: {root}" in shown and f"@ {REVISION[:12]}]" in shown
    missing = run_cli("recommend", "--model", "acme-labs/other", "--method", "sft", env=env)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "unknown model 'acme-labs/other'" in missing.stderr and "Traceback" not in missing.stderr


def test_the_hub_source_goes_through_huggingface_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hf_hub_download itself, told it is offline, serves the cached config.json: the hub code path
    with no network."""
    constants = pytest.importorskip("huggingface_hub.constants")
    root = make_cache(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "ENDPOINT", "http://localhost")  # resolves with no network
    monkeypatch.setattr(hub, "_FAILED", {})
    found = hub.hub_config(REPO_ID)
    assert isinstance(found, hub.Found) and found.revision == REVISION
    assert json.loads(found.path.read_text()) == CONFIG
    assert isinstance(hub.hub_config("acme-labs/not-downloaded"), str)  # not cached: a reason, not a crash


def _one_per_family(book: Rulebook) -> list[str]:
    by_family: dict[str, str] = {}
    for mid in sorted(book.models, key=lambda m: registry_model(book, m).params_b):
        by_family.setdefault(registry_model(book, mid).family, mid)
    return sorted(by_family.values())


@pytest.mark.slow
def test_counts_agree_with_transformers_for_every_family(book: Rulebook) -> None:
    """count_parameters against the transformers model each family's config builds (on the meta
    device: shapes, no memory), for the smallest registry entry of every family."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    checked = []
    for mid in _one_per_family(book):
        entry = book.models[mid]
        cfg = entry_config(entry)
        model_type = cfg.pop("model_type")
        if book.families[registry_model(book, mid).family].get("config_keys"):
            continue  # its config.json keys differ: tests/test_uniform_families.py builds it from them
        cfg.pop("text_of", None)
        if model_type not in transformers.models.auto.configuration_auto.CONFIG_MAPPING:
            continue  # remote code (Qwen v1)
        conf = transformers.AutoConfig.for_model(model_type, **cfg)
        try:
            with torch.device("meta"):
                model = transformers.AutoModelForCausalLM.from_config(conf)
        except ValueError:
            continue  # a multimodal wrapper without a causal-LM head class of its own
        fam = registry_model(book, mid).family
        total, _ = count_parameters({"model_type": model_type, **cfg}, book.families.get(fam), mid)
        assert total == sum(p.numel() for p in model.parameters()), mid
        checked.append(fam)
    assert {"llama", "qwen2", "qwen3", "qwen3_moe", "gemma3", "phi3", "gpt_oss", "llama4", "olmo", "olmoe",
            "glm4", "starcoder2", "smollm3", "mixtral", "gpt_neox", "stablelm", "phi", "falcon", "qwen2_moe",
            "gemma", "gemma2", "olmo2", "mistral"} <= set(checked)


def test_registry_keys_no_copy_covered_are_named_wherever_the_facts_are_shown(book: Rulebook) -> None:
    """`unverified:` names keys of its own entry, and the facts' source says which were not checked."""
    marked = {mid: e["unverified"] for mid, e in book.models.items() if e.get("unverified")}
    assert marked and len(marked) < len(book.models)
    for mid, keys in marked.items():
        entry = book.models[mid]
        assert keys == "all" or all(k in entry for k in keys), (mid, keys)
        detail = registry_model(book, mid).source_detail
        assert "not checked against a copy of its config.json" in detail
        if keys != "all":
            assert all(k in detail for k in keys)
    assert "not checked" not in registry_model(book, "llama-3.1-8b").source_detail
    assert "unverified" not in entry_config(book.models[next(iter(marked))])  # bookkeeping, not a config.json key
    proc = run_cli("recommend", "--model", "Salesforce/xgen-7b-8k-base", "--method", "sft", "--no-detect", "--format", "json")
    model = json.loads(proc.stdout)["facts"]["model"] if proc.returncode == 0 else None
    assert model is not None, proc.stderr
    assert "its shapes are not checked" in model["source_detail"]


def test_the_registry_file_marks_nothing_unverified_outside_its_data() -> None:
    """The mark lives in `unverified:` lists only (a comment saying 'unverified' would be invisible to users)."""
    from advisor.paths import rules_dir

    text = (rules_dir() / "models.yaml").read_text()
    stray = [n for n, line in enumerate(text.splitlines(), 1)
             if "unverified" in line.split("#", 1)[-1] and "#" in line and not line.lstrip().startswith("#")]
    assert not stray, f"rules/models.yaml lines {stray}: say it in the entry's `unverified:` list"
