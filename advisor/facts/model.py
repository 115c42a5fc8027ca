"""Model facts: from a config.json (a path, the local Hugging Face cache or the hub) or the
registry, with the parameter count computed from the architecture (so a registry entry and its
config.json always agree). ``MODEL_SOURCES`` is the one order they are tried in."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from advisor.errors import FactError
from advisor.facts import hub
from advisor.facts.layers import LayerKind, LayerModule, layout, sliding_layers, with_defaults
from advisor.safeio import at_path, check_name, clip, clip_path, load_json, read_text, stat_path
from advisor.suggest import closest

if TYPE_CHECKING:  # the rulebook sits above the facts; they only read its registries
    from advisor.rulebook.load import Rulebook

MAX_CONFIG_BYTES = 5_000_000
# A sanity bound, not knowledge: far past any real model's width, depth, vocabulary or expert count
# (the largest published ones are below 10^6), so that `hidden_size: 1e12` is refused, not counted.
MAX_DIMENSION = 10_000_000


# Where a model's facts came from: a config.json the user named (file), the local Hugging Face
# cache (cache), rules/models.yaml (registry) or the hub's config.json fetched now (hub).
SourceKind = Literal["file", "cache", "registry", "hub"]


# The fields only the memory model reads (a layered family's module shapes): neither rule facts nor output.
LAYOUT_FIELDS = ("layer_kinds", "layer_norms", "final_norm", "outer_modules", "sliding_layers", "sliding_window")


@dataclass(frozen=True)
class ModelFacts:
    name: str
    source: str  # a SourceKind
    family: str
    model_type: str
    calibrated: bool
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    is_moe: bool
    num_experts: int
    experts_per_token: int
    params_b: float
    active_params_b: float
    attention_modules: tuple[str, ...] = ()
    mlp_modules: tuple[str, ...] = ()
    hf_id: str | None = None
    source_detail: str = ""  # the config.json path, or the registry file (and how the name matched)
    revision: str | None = None  # the hub commit of a cached or fetched config.json
    # What a trainer's from_pretrained loads: the hub id or model directory the user named. A registry
    # match by repo name (an -Instruct fine-tune, a mirror) lends only its shapes, so this keeps the
    # user's id; a config.json path becomes its directory, as from_pretrained takes no file.
    pretrained: str | None = None
    # Non-uniform layers (rules/families.yaml `layers`): each layer kind with its modules, for the
    # memory model; empty for a family whose layers are all alike.
    layer_kinds: tuple[LayerKind, ...] = ()
    layer_norms: int = 0  # with layer_kinds: the norm parameters of every decoder layer
    final_norm: int = 0  # with layer_kinds: the norm after the last layer
    outer_modules: tuple[LayerModule, ...] = ()  # with layer_kinds: modules outside the layers, held once
    # Uniform layers with sliding-window attention (rules/families.yaml `sliding`): how many layers
    # cache only their window while generating, and the window (transformers keeps window - 1 tokens).
    sliding_layers: int = 0
    sliding_window: int = 0

    def describe_source(self) -> str:
        """'cache: /path/config.json @ 0123abcd': how the text output names where the facts came from."""
        return describe_source(self.source, self.source_detail, self.revision)

    @property
    def linear_modules(self) -> list[str]:
        return [*self.attention_modules, *self.mlp_modules]

    def as_dict(self) -> dict[str, Any]:
        """The facts as data, less the layout only the memory model reads (LAYOUT_FIELDS)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in LAYOUT_FIELDS}

    def as_facts(self) -> dict[str, Any]:
        out = self.as_dict()
        for key in ("source", "source_detail", "revision", "hf_id", "pretrained"):
            out.pop(key)
        facts = {f"model.{k}": v for k, v in out.items()}
        for key in ("attention_modules", "mlp_modules"):
            facts[f"model.{key}"] = list(getattr(self, key))
            if not facts[f"model.{key}"]:
                del facts[f"model.{key}"]  # unknown family: the rules must not guess names
        if self.linear_modules:
            facts["model.linear_modules"] = self.linear_modules
        return facts


def billions(count: float) -> float:
    """A parameter count in billions, to the thousandth (8.03, 70.554), or to 3 significant figures below a
    million (a test model of 0.34M is 0.000338, not 0)."""
    return round(count / 1e9, 3) or float(f"{count / 1e9:.3g}")

def describe_source(kind: str, detail: str = "", revision: str | None = None) -> str:
    out = f"{kind}: {detail}" if detail else kind
    return f"{out} @ {revision[:12]}" if revision else out


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def _family_for(book: Rulebook, model_type: str) -> dict[str, Any] | None:
    for fam in book.families.values():
        if model_type in fam["model_types"]:
            return fam
    return None


def _int(cfg: dict[str, Any], key: str, origin: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise FactError(f"{origin}: key '{key}' is missing", hint="is this a causal LM config.json?")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FactError(f"{origin}: key '{key}' must be a positive integer, got {clip(value)}")
    if value > MAX_DIMENSION:
        raise FactError(f"{origin}: key '{key}' is {clip(value)}, not a plausible model dimension "
                        f"(at most {MAX_DIMENSION:.0e})", hint="check the config.json")
    return value


def _optional(cfg: dict[str, Any], *keys: str, origin: str) -> int:
    """The first of ``keys`` that is set, as a count (0 when none is): num_local_experts, num_experts,
    ... A value that is not a whole number (NaN, Infinity, [8], 1e12) is an error naming the key."""
    for key in keys:
        value = cfg.get(key)
        if value is None or value == 0:
            continue
        if isinstance(value, float) and value.is_integer() and 0 < value <= MAX_DIMENSION:
            return int(value)
        return _int(cfg, key, origin)
    return 0


def canonical_config(cfg: dict[str, Any], family: dict[str, Any] | None, origin: str) -> dict[str, Any]:
    """``cfg`` with the standard key names filled in from the ones the family's config.json uses
    (GPT-J's n_embd, MPT's d_model, DBRX's attn_config.kv_n_heads: the family's ``config_keys``),
    then from the products its ``derived_keys`` name (MPT's intermediate_size = expansion_ratio x
    d_model). A key config.json itself sets is kept."""
    fam = family or {}
    out = dict(cfg)
    for key, paths in fam.get("config_keys", {}).items():
        if out.get(key) is None:
            # a dotted path reads a nested key (DBRX's attn_config.kv_n_heads)
            out[key] = next((v for v in (at_path(cfg, p) for p in paths) if v is not None), None)
    for key, factors in fam.get("derived_keys", {}).items():
        if out.get(key) is None:
            value = 1
            for factor in factors:
                value *= factor if isinstance(factor, int) else _int(out, factor, origin)
            out[key] = value
    return out


def count_parameters(cfg: dict[str, Any], family: dict[str, Any] | None, origin: str) -> tuple[int, int]:
    """(total, active per token) parameters of a decoder-only transformer described by ``cfg``."""
    fam = family or {}
    if "layers" in fam:  # layers not all alike: counted kind by kind (advisor/facts/layers.py)
        lay = layout(cfg, fam["layers"], fam["id"], origin)
        return lay.total, lay.active
    cfg = canonical_config(cfg, family, origin)
    h = _int(cfg, "hidden_size", origin)
    layers = _int(cfg, "num_hidden_layers", origin)
    heads = _int(cfg, "num_attention_heads", origin)
    kv = _int(cfg, "num_key_value_heads", origin, heads)
    d = _int(cfg, "head_dim", origin, h // heads) if cfg.get("head_dim") is not None else h // heads
    inter = _int(cfg, "intermediate_size", origin)
    vocab = _int(cfg, "vocab_size", origin)
    if fam.get("intermediate_doubled"):
        inter //= 2

    # Biases, each switched on by the family (structure) or by config.json's own key.
    switched = any(cfg.get(key) for key in fam.get("bias_keys", ()))  # starcoder2's use_bias: every linear
    all_attn = bool(fam.get("attention_bias") or cfg.get("attention_bias") or switched)  # q, k, v and o
    attn = h * heads * d + 2 * h * kv * d + heads * d * h
    if (all_attn or fam.get("qkv_bias") or cfg.get("qkv_bias")
            or any(cfg.get(key) for key in fam.get("qkv_bias_keys", ()))):  # stablelm's use_qkv_bias
        attn += (heads + 2 * kv) * d
    if all_attn and fam.get("o_bias", True):
        attn += h
    if fam.get("attention_sinks"):  # gpt-oss: one learned sink logit per head
        attn += heads

    gated = fam.get("gated_mlp", True)
    mlp_bias = bool(fam.get("mlp_bias") or cfg.get("mlp_bias") or switched)

    def mlp(width: int) -> int:
        n = (3 if gated else 2) * h * width
        if mlp_bias:
            n += (2 if gated else 1) * width + h
        return n

    experts = _optional(cfg, "num_local_experts", "num_experts", origin=origin)
    top_k = _optional(cfg, "num_experts_per_tok", "experts_per_token", origin=origin)
    if experts > 1 and not 1 <= top_k <= experts:
        raise FactError(f"{origin}: key 'num_experts_per_tok' is {top_k}, not between 1 and {experts} experts")
    if cfg.get("head_dim") is None and h % heads:
        raise FactError(f"{origin}: key 'hidden_size' {h} is not divisible by num_attention_heads {heads}")
    if heads % kv:
        raise FactError(f"{origin}: key 'num_key_value_heads' {kv} does not divide num_attention_heads {heads}")
    moe_layers = 0
    dense_ffn = mlp(inter)
    if experts > 1:
        width = _optional(cfg, "moe_intermediate_size", origin=origin) or inter
        # The shared expert's width: its own key (Qwen2-MoE), or a key the family names (Llama 4:
        # intermediate_size, the experts' own width).
        shared = _optional(cfg, "shared_expert_intermediate_size", *fam.get("shared_expert_width_keys", ()),
                           origin=origin)
        shared_n = (mlp(shared) + (h if fam.get("shared_expert_gate") else 0)) if shared else 0
        router = h * experts + (experts if fam.get("router_bias") else 0)
        ffn_total = experts * mlp(width) + router + shared_n
        ffn_active = top_k * mlp(width) + router + shared_n
        # Interleaved MoE (Llama 4's interleave_moe_layer_step): every step-th layer has experts,
        # the others a dense MLP of the width the family's dense_width_key names.
        step = _optional(cfg, *fam.get("moe_layer_step_keys", ()), origin=origin) or 1
        moe_layers = layers // step
        if step > 1:
            dense_ffn = mlp(_optional(cfg, *fam.get("dense_width_keys", ()), origin=origin) or inter)
    else:
        ffn_total = ffn_active = dense_ffn

    norm = 0 if fam.get("norm_weights") is False else h * (2 if fam.get("norm_bias") else 1)
    norms = int(fam.get("norms_per_layer", 2)) * norm
    qk = fam.get("qk_norm", "none")
    if qk == "head_dim":
        norms += 2 * d
    elif qk == "full":
        norms += (heads + kv) * d
    norms += int(fam.get("activation_params", 0))  # Apertus' xIELU: alpha_p and alpha_n per layer

    embed = vocab * h
    tied = bool(cfg.get("tie_word_embeddings", fam.get("tie_word_embeddings_default", False)))
    head = (0 if tied else vocab * h) + (vocab if fam.get("lm_head_bias") else 0)
    outer = embed + head + norm
    if fam.get("learned_positions"):  # GPT-2's wpe
        outer += _int(cfg, "max_position_embeddings", origin) * h
    dense_layers = layers - moe_layers
    total = outer + layers * (attn + norms) + moe_layers * ffn_total + dense_layers * dense_ffn
    active = outer + layers * (attn + norms) + moe_layers * ffn_active + dense_layers * dense_ffn
    return total, active


def facts_from_config(
    cfg: dict[str, Any], book: Rulebook, *, name: str, source: str, hf_id: str | None = None,
    detail: str = "", revision: str | None = None,
) -> ModelFacts:
    origin = detail or source
    wrapper = cfg.get("text_of")  # a registry entry of a multimodal model's text tower
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers keep the LM in text_config
        wrapper = cfg.get("model_type")
        cfg = {**cfg["text_config"], "tie_word_embeddings": cfg.get("tie_word_embeddings",
                                                                    cfg["text_config"].get("tie_word_embeddings"))}
    if wrapper:
        detail = f"{detail}; the text tower of a {wrapper} model (its vision or audio encoder is not counted)"
    model_type = str(cfg.get("model_type") or "unknown")
    family = _family_for(book, model_type)
    if family and "layers" in family:
        return _layered_facts(cfg, family, name=name, source=source, hf_id=hf_id, detail=detail, revision=revision)
    total, active = count_parameters(cfg, family, origin)
    cfg = canonical_config(cfg, family, origin)
    heads = _int(cfg, "num_attention_heads", origin)
    h = _int(cfg, "hidden_size", origin)
    experts = _optional(cfg, "num_local_experts", "num_experts", origin=origin)
    ctx = next((cfg[k] for k in ("max_position_embeddings", "max_sequence_length", "seq_length") if cfg.get(k) is not None),
               None)  # 0 is a value to name, not a missing key
    if not isinstance(ctx, int) or isinstance(ctx, bool) or not 0 < ctx <= MAX_DIMENSION * 100:
        raise FactError(f"{origin}: key 'max_position_embeddings' is missing or not a plausible positive integer, "
                        f"got {clip(ctx)}")
    inter = _int(cfg, "intermediate_size", origin)
    if family and family.get("intermediate_doubled"):
        inter //= 2
    layers = _int(cfg, "num_hidden_layers", origin)
    sliding = sliding_layers(cfg, (family or {}).get("sliding", []), model_type, (family or {}).get("id", ""), origin)
    return ModelFacts(
        name=name,
        source=source,
        family=family["id"] if family else "unknown",
        model_type=model_type,
        calibrated=bool(family and family.get("calibrated")),
        hidden_size=h,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=_int(cfg, "num_key_value_heads", origin, heads),
        head_dim=_optional(cfg, "head_dim", origin=origin) or h // heads,
        intermediate_size=(_optional(cfg, "moe_intermediate_size", origin=origin) or inter) if experts > 1 else inter,
        vocab_size=_int(cfg, "vocab_size", origin),
        max_position_embeddings=ctx,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings",
                                         (family or {}).get("tie_word_embeddings_default", False))),
        is_moe=experts > 1,
        num_experts=experts if experts > 1 else 1,
        experts_per_token=(_optional(cfg, "num_experts_per_tok", "experts_per_token", origin=origin) or 1)
        if experts > 1 else 1,
        params_b=billions(total),
        active_params_b=billions(active),
        attention_modules=tuple(family["attention_modules"]) if family else (),
        mlp_modules=tuple(family["mlp_modules"]) if family else (),
        hf_id=hf_id,
        source_detail=detail,
        revision=revision,
        sliding_layers=sliding[0],
        sliding_window=sliding[1],
    )


def _layered_facts(
    cfg: dict[str, Any], family: dict[str, Any], *, name: str, source: str, hf_id: str | None, detail: str,
    revision: str | None,
) -> ModelFacts:
    """A family whose layers are not all alike: counted layer kind by layer kind (advisor/facts/layers.py);
    the fields its description's `facts:` names (num_experts from n_routed_experts, ...) come from there."""
    origin = detail or source
    spec = family["layers"]
    cfg = with_defaults(cfg, spec)
    lay = layout(cfg, spec, family["id"], origin)
    f = lay.facts
    h = _int(cfg, "hidden_size", origin)
    heads = int(f.get("num_heads") or _int(cfg, "num_attention_heads", origin))
    experts = int(f.get("num_experts") or 0)
    ctx = cfg.get("max_position_embeddings")
    if not isinstance(ctx, int) or isinstance(ctx, bool) or not 0 < ctx <= MAX_DIMENSION * 100:
        raise FactError(f"{origin}: key 'max_position_embeddings' is missing or not a plausible positive integer, "
                        f"got {clip(ctx)}")
    return ModelFacts(
        name=name, source=source, family=family["id"], model_type=str(cfg.get("model_type")),
        calibrated=bool(family.get("calibrated")), hidden_size=h,
        num_layers=_int(cfg, "num_hidden_layers", origin), num_heads=heads,
        num_kv_heads=int(f.get("num_kv_heads") or _int(cfg, "num_key_value_heads", origin, heads)),
        head_dim=int(f.get("head_dim") or _optional(cfg, "head_dim", origin=origin) or h // heads),
        intermediate_size=int(f.get("intermediate_size") or _int(cfg, "intermediate_size", origin)),
        vocab_size=_int(cfg, "vocab_size", origin), max_position_embeddings=ctx,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings")), is_moe=experts > 1,
        num_experts=experts if experts > 1 else 1,
        experts_per_token=int(f.get("experts_per_token") or 1) if experts > 1 else 1,
        params_b=billions(lay.total), active_params_b=billions(lay.active),
        attention_modules=tuple(family["attention_modules"]), mlp_modules=tuple(family["mlp_modules"]),
        hf_id=hf_id, source_detail=detail, revision=revision, layer_kinds=lay.kinds,
        layer_norms=lay.norms, final_norm=lay.final_norm, outer_modules=lay.outer,
    )


def registry_names(book: Rulebook) -> dict[str, str]:
    """Every accepted spelling (id, alias, hub id) -> registry id."""
    names: dict[str, str] = {}
    for mid, entry in book.models.items():
        for n in [mid, *entry.get("aliases", []), entry["hf_id"], entry["hf_id"].split("/")[-1]]:
            names[_norm(n)] = mid
    return names


REGISTRY_KEYS = ("id", "aliases", "hf_id", "unverified")  # the registry's own bookkeeping, not config.json keys


def entry_config(entry: dict[str, Any]) -> dict[str, Any]:
    """A registry entry as the config.json it stands for: less the registry's bookkeeping, the
    published counts and the loader's marks (``_file``)."""
    return {k: v for k, v in entry.items() if k not in REGISTRY_KEYS and not k.startswith(("_", "published"))}


def unverified_note(entry: dict[str, Any]) -> str:
    """What of a registry entry no citable copy of its config.json covered, said where its facts are shown."""
    keys = entry.get("unverified")
    if not keys:
        return ""
    if keys == "all":
        return "; its shapes are not checked against a copy of its config.json"
    said = [("aliases (taken to share these shapes)" if k == "aliases" else k) for k in keys]
    return f"; not checked against a copy of its config.json: {', '.join(said)}"


def registry_model(book: Rulebook, model_id: str) -> ModelFacts:
    entry = book.models[model_id]
    return facts_from_config(entry_config(entry), book, name=model_id, source="registry",
                             detail=str(entry["_file"]) + unverified_note(entry), hf_id=entry["hf_id"])


def read_config_json(path: Path) -> dict[str, Any]:
    file = path / "config.json" if path.is_dir() else path
    if path.is_dir() and not file.exists():
        raise FactError(f"{clip_path(path)}: no config.json here",
                        hint="pass a config.json file or a model directory holding one")
    data = load_json(read_text(file, limit=MAX_CONFIG_BYTES, what="model config.json", error=FactError),
                     clip_path(file), FactError)
    if not isinstance(data, dict):
        raise FactError(f"{clip_path(file)}: a config.json must hold a JSON object, got {type(data).__name__}")
    return data


def _exists(path: Path) -> bool:
    """Whether ``path`` names something; a symlink loop or an unreadable name is an error, not 'no'."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        stat_path(path, "model config", FactError)  # raises the one-line error
    return True


# --- resolution: one ordered tuple of sources -------------------------------------------------
# Each source answers ModelFacts, or None and (in ``why``) why it passed, for the final error.

Lookup = Callable[[str, "Rulebook", list[str]], "ModelFacts | None"]


def _from_file(spec: str, book: Rulebook, why: list[str]) -> ModelFacts | None:
    path = Path(spec).expanduser()
    if not _exists(path):
        return None
    file = path / "config.json" if path.is_dir() else path
    return facts_from_config(read_config_json(path), book, name=str(file), source="file", detail=str(file))


def _from_alias(spec: str, book: Rulebook, why: list[str]) -> ModelFacts | None:
    """A registry id or alias that is no hub id (llama-8b): no cache or hub could know it."""
    if hub.is_repo_id(spec):
        return None
    mid = registry_names(book).get(_norm(spec))
    return registry_model(book, mid) if mid else None


def _from_found(found: hub.Found, spec: str, book: Rulebook, kind: SourceKind) -> ModelFacts:
    return facts_from_config(read_config_json(found.path), book, name=spec, source=kind,
                             detail=str(found.path), revision=found.revision, hf_id=spec)


def _from_cache(spec: str, book: Rulebook, why: list[str]) -> ModelFacts | None:
    found = hub.cached_config(spec)
    if found is None:
        if hub.is_repo_id(spec):
            why.append(f"not in the Hugging Face cache ({clip_path(hub.cache_dir())})")
        return None
    return _from_found(found, spec, book, "cache")


def _from_hub_id(spec: str, book: Rulebook, why: list[str]) -> ModelFacts | None:
    """A hub id (or alias) the registry lists."""
    mid = registry_names(book).get(_norm(spec))
    return registry_model(book, mid) if mid else None


def _from_hub(spec: str, book: Rulebook, why: list[str]) -> ModelFacts | None:
    found = hub.hub_config(spec)
    if isinstance(found, str):
        if hub.is_repo_id(spec):
            why.append(found)
        return None
    return _from_found(found, spec, book, "hub")


_SIZED = re.compile(r"(?:^|[-_.])\d+(?:\.\d+)?[bm](?:$|-)")


def _registry_name_in(repo: str, names: dict[str, str]) -> str | None:
    """The longest registry name ``repo`` is, begins with or ends with at a '-' boundary:
    Meta-Llama-3-8B-Instruct-AWQ, Qwen3-30B-A3B-NVFP4 (a quantized copy), smollm2-1.7B-sft,
    Skywork-Reward-V2-Qwen3-8B (a fine-tune that names its base)."""
    if repo in names:
        return repo
    # Only a name that states a size (7b, 360m, 30b-a3b) stands for one model: 'mistral' alone does not.
    found = [n for n in names if (repo.startswith(n + "-") or repo.endswith("-" + n)) and _SIZED.search(n)]
    return max(found, key=len) if found else None


def _from_repo_name(spec: str, book: Rulebook, why: list[str]) -> ModelFacts | None:
    """A hub id outside the registry whose repo name is, or begins or ends with, a registry name (a
    mirror, a quantized copy, a fine-tune named after its base, a local models/NAME path that is not
    there): the base's architecture, a guess said as such in source_detail."""
    if "/" not in spec:
        return None
    names = registry_names(book)
    repo = _norm(spec).rstrip("/").rsplit("/", 1)[-1]
    name = _registry_name_in(repo, {n: mid for n, mid in names.items() if "/" not in n})
    if name is None:
        return None
    facts = registry_model(book, names[name])
    how = "the repo name" if name == repo else f"the repo name (it names {name})"
    return replace(facts, source_detail=f"{facts.source_detail}, matched by {how} of {spec}")


# The order a --model / base_model is resolved in. A path on disk comes first, as transformers'
# from_pretrained loads a local directory before the hub; then a short registry alias (never a hub
# id); then the user's own cached config.json of a hub id (their revision), before the registry's
# copy of it; then the hub; and a repo-name match, the one guess, last.
MODEL_SOURCES: tuple[tuple[SourceKind, Lookup], ...] = (
    ("file", _from_file),
    ("registry", _from_alias),
    ("cache", _from_cache),
    ("registry", _from_hub_id),
    ("hub", _from_hub),
    ("registry", _from_repo_name),
)


def _pretrained(spec: str, facts: ModelFacts) -> str:
    """What from_pretrained should load for ``spec``: a local model's directory, the hub id as given,
    or an alias's registry hub id."""
    if facts.source == "file":
        path = Path(spec).expanduser()
        return str(path if path.is_dir() else path.parent)
    return spec if hub.is_repo_id(spec) else facts.hf_id or facts.name


def resolve_model(spec: str, book: Rulebook) -> ModelFacts:
    """A model's facts from the first of MODEL_SOURCES that knows ``spec``."""
    check_name(spec, "--model / base_model", FactError)
    if not spec.strip():  # Path('') is '.', the working directory: not what an empty name means
        raise FactError("--model / base_model: the name is empty",
                        hint="a registry alias (advisor models), a hub id, a model directory or a config.json")
    why: list[str] = []
    for _kind, lookup in MODEL_SOURCES:
        facts = lookup(spec, book, why)
        if facts is not None:
            return replace(facts, pretrained=_pretrained(spec, facts))
    names = registry_names(book)
    key = _norm(spec)
    suggestions = list(dict.fromkeys(closest(key, names))) or sorted(book.models)[:5]  # best match first
    if hub.is_repo_id(spec):
        raise FactError(
            f"unknown model {clip(spec)}: not a file, not in the registry, " + "; ".join(why),
            hint=f"pass its config.json or model directory, or let advisor fetch config.json online "
                 f"({hub.HUB_EXTRA}, HF_HUB_OFFLINE unset); closest aliases: {', '.join(suggestions)}",
        )
    raise FactError(
        f"unknown model {clip(spec)}: not a registry alias and no such file",
        hint=f"closest aliases: {', '.join(suggestions)}; `advisor models` lists all, or pass a config.json",
    )
