"""Models whose decoder layers are not all alike (hybrid linear-attention and state-space models,
MLA with first-k-dense MoE, interleaved dense / MoE): the parameter count, and each layer kind's
modules for the memory model, from a family's ``layers`` description in rules/families.yaml.

The description is data: which kind each layer is (a ``layer_types`` list, an interval, the first
k layers, a pattern string, a list of indices), each kind's modules with their shapes as
arithmetic over config.json keys, and the KV cache or fixed state a kind keeps. This module only
evaluates it. Its arithmetic reads config.json keys (not model facts), so it is evaluated here,
below the rulebook's formula language, which the facts layer may not import."""

from __future__ import annotations

import ast
import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from advisor.errors import FactError
from advisor.safeio import at_path, clip

# A sanity bound, not knowledge (as model.MAX_DIMENSION): past any real model's module size.
MAX_VALUE = 10**13
MAX_LAYERS = 100_000  # not-knowledge: each layer is assigned a kind, so the count bounds the work
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
        ast.Div: operator.truediv}
# Besides these: given(key, ..., fallback), the first key config.json sets. max, min and sum also take
# a config.json list of numbers (Gemma 3n's per-layer intermediate_size).
_CALLS: dict[str, Callable[..., Any]] = {"max": max, "min": min, "int": int, "sum": lambda *a: sum(a)}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Gt: operator.gt, ast.Lt: operator.lt}


@dataclass(frozen=True)
class LayerModule:
    """One module of a layer kind, evaluated: what rules/memory.yaml's modules say, for one kind."""

    name: str
    kind: str  # linear | experts | router | parameter
    in_features: int
    out_features: int
    count: int
    bias: bool
    mlp: str | None = None
    targets: tuple[str, ...] = ()
    active_count: int | None = None  # experts: how many are active per token (None: all)

    @property
    def params(self) -> int:
        return self.count * (self.in_features * self.out_features + (self.out_features if self.bias else 0))

    @property
    def active_params(self) -> int:
        n = self.count if self.active_count is None else self.active_count
        return n * (self.in_features * self.out_features + (self.out_features if self.bias else 0))


@dataclass(frozen=True)
class LayerKind:
    id: str
    layers: int  # how many decoder layers are of this kind
    modules: tuple[LayerModule, ...]
    kv_per_token: int = 0  # KV-cache elements per token for one such layer
    state: int = 0  # fixed state elements per sequence for one such layer (SSM, conv, linear attention)
    # A sliding-window (or chunked) layer's window: it caches at most window - 1 tokens, as
    # transformers' DynamicSlidingWindowLayer does; 0: every token.
    window: int = 0

    def cached_tokens(self, seq_len: int) -> int:
        """The tokens of a sequence of seq_len whose keys and values this layer keeps."""
        return cached_tokens(seq_len, self.window)


def cached_tokens(seq_len: int, window: int) -> int:
    """Tokens a DynamicSlidingWindowLayer of this window keeps: the last window - 1 (a window of 0 or 1
    keeps all: transformers slices [-window + 1:], which for 1 is the whole sequence)."""
    return min(seq_len, window - 1) if window > 1 else seq_len


@dataclass(frozen=True)
class Layout:
    total: int
    active: int
    kinds: tuple[LayerKind, ...]
    outer: tuple[LayerModule, ...]  # modules outside the decoder layers, held once (per-layer embeddings)
    facts: dict[str, Any]  # the ModelFacts fields the family's `facts:` maps (num_experts, head_dim, ...)
    norms: int  # the norm parameters of each decoder layer (the kinds' own norms are modules)
    final_norm: int


class _Env:
    """config.json (with the family's defaults) and the family's derived dims, read by name."""

    def __init__(self, cfg: dict[str, Any], dims: dict[str, str], origin: str) -> None:
        self.cfg, self.origin = cfg, origin
        self.dims: dict[str, Any] = {}
        for name, text in dims.items():
            self.dims[name] = self.value(text, f"dims.{name}")

    def lookup(self, path: list[str]) -> Any:
        if len(path) == 1 and path[0] in self.dims:
            return self.dims[path[0]]
        value: Any = self.cfg
        for part in path:
            if not isinstance(value, dict) or value.get(part) is None:
                raise FactError(f"{self.origin}: key '{'.'.join(path)}' is missing",
                                hint="is this the config.json of the family it names (model_type)?")
            value = value[part]
        return value

    def has(self, key: str) -> bool:
        return at_path(self.cfg, key) is not None

    def value(self, raw: Any, where: str) -> Any:
        if isinstance(raw, bool | int):
            return raw
        try:
            tree = ast.parse(str(raw), mode="eval").body
        except SyntaxError as exc:
            raise FactError(f"rules/families.yaml: {where}: not an expression: {clip(raw)}") from exc
        return self._eval(tree, where)

    def number(self, raw: Any, where: str) -> int:
        value = self.value(raw, where)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VALUE:
            raise FactError(f"{self.origin}: {where} is {clip(value)}, not a plausible size",
                            hint="check the config.json keys it reads")
        return value

    def _eval(self, node: ast.AST, where: str) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, bool | int | str):
            return node.value
        if isinstance(node, ast.Name | ast.Attribute):
            return self.lookup(_path(node, where))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = self._eval(node.left, where), self._eval(node.right, where)
            for side in (left, right):
                if isinstance(side, bool) or not isinstance(side, int | float) or side != side:
                    raise FactError(f"{self.origin}: {where}: {clip(side)} is not a number",
                                    hint="check the config.json keys it reads")
            if isinstance(node.op, ast.FloorDiv | ast.Div) and right == 0:
                raise FactError(f"{self.origin}: {where} divides by zero", hint="check the config.json keys it reads")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.IfExp):
            return self._eval(node.body if self._eval(node.test, where) else node.orelse, where)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP:
            left, right = self._eval(node.left, where), self._eval(node.comparators[0], where)
            try:
                return _CMP[type(node.ops[0])](left, right)
            except TypeError as exc:  # 'auto' < 3: a config.json value of another type than the rule expects
                raise FactError(f"{self.origin}: {where}: cannot compare {clip(left)} with {clip(right)}",
                                hint="check the config.json keys it reads") from exc
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS
                and node.args and not node.keywords):
            args = [self._eval(arg, where) for arg in node.args]
            if node.func.id != "int":
                args = [a for arg in args for a in (arg if isinstance(arg, list) else [arg])]
            if not args or not all(isinstance(a, int | float) and not isinstance(a, bool) and abs(a) <= MAX_VALUE for a in args):
                raise FactError(f"{self.origin}: {where}: {clip(ast.unparse(node))} of {clip(args)}",
                                hint="check the config.json keys it reads")
            return _CALLS[node.func.id](*args)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "given" and node.args:
            # the first argument config.json sets (a key spelled two ways: num_experts / num_local_experts)
            for arg in node.args[:-1]:
                if not isinstance(arg, ast.Name | ast.Attribute):
                    raise FactError(f"rules/families.yaml: {where}: given() takes key names but the last")
                key = _path(arg, where)
                if (len(key) == 1 and key[0] in self.dims) or self.has(".".join(key)):
                    return self.lookup(key)
            return self._eval(node.args[-1], where)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" \
                and len(node.args) == 1:
            items = self._eval(node.args[0], where)
            return len(items) if isinstance(items, list | str) else 0
        raise FactError(f"rules/families.yaml: {where}: unsupported expression {clip(ast.unparse(node))}")


def _path(node: ast.AST, where: str) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [*_path(node.value, where), node.attr]
    raise FactError(f"rules/families.yaml: {where}: unsupported name {clip(ast.unparse(node))}")


def _assign(env: _Env, source: dict[str, Any], layers: int, where: str) -> list[str] | None:
    """Each layer's kind by one slot source (its ``head`` and ``tail`` overriding the first and last
    layers); None when the source's key is not in config.json."""
    kinds = _assign_source(env, source, layers, where)
    if kinds is None:
        return None
    for end in ("head", "tail"):
        for n, part in enumerate(source.get(end, ())):
            span = env.number(part["layers"], f"{where}.{end}[{n}].layers")
            if span > layers:
                raise FactError(f"{env.origin}: {where}: key '{part['layers']}' is {span}, more than the "
                                f"{layers} layers (num_hidden_layers)", hint="check the config.json")
            if end == "head":
                kinds = [str(part["kind"])] * span + kinds[span:]
            else:
                kinds = kinds[:layers - span] + [str(part["kind"])] * span
    return kinds


def _assign_source(env: _Env, source: dict[str, Any], layers: int, where: str) -> list[str] | None:
    if "all" in source:
        return [str(source["all"])] * layers
    if "list" in source:
        key = source["list"]
        if not env.has(key) or env.lookup(key.split(".")) == []:
            return None  # unset, or empty: transformers derives it (Llama 4's no_rope_layers [])
        items = env.lookup(key.split("."))
        # names, or per-layer flags (Mistral Large 4's no_rope_layers: 1 rope, 0 none), which `map` names
        if not isinstance(items, list) or len(items) != layers or not all(
                isinstance(i, str) or (isinstance(i, int) and not isinstance(i, bool)) for i in items):
            raise FactError(f"{env.origin}: key '{key}' must list {layers} layer kinds (num_hidden_layers), "
                            f"got {clip(items)}")
        mapping = source.get("map", {})
        return [str(mapping.get(str(i), i)) for i in items]
    if "pattern" in source:
        key = source["pattern"]
        if not env.has(key):
            return None
        text = env.lookup(key.split("."))
        mapping = source["map"]
        if not isinstance(text, str) or len(text) != layers or any(c not in mapping for c in text):
            raise FactError(f"{env.origin}: key '{key}' must be {layers} characters (num_hidden_layers) of "
                            f"{''.join(mapping)}, got {clip(text)}")
        return [str(mapping[c]) for c in text]
    kind, other = str(source["kind"]), str(source["other"])
    keys = [source[k] for k in ("every", "first", "indices") if k in source]
    if any(isinstance(k, str) and k.isidentifier() and not env.has(k) and k not in env.dims for k in keys):
        return None
    if "indices" in source:
        found = env.lookup(str(source["indices"]).split("."))
        base = int(source.get("base", 0))
        if not isinstance(found, list) or not all(isinstance(i, int) and base <= i < layers + base for i in found):
            raise FactError(f"{env.origin}: key '{source['indices']}' must list layer indices below {layers + base}, "
                            f"got {clip(found)}")
        chosen = {i - base for i in found}
        return [kind if i in chosen else other for i in range(layers)]
    if "every" in source:
        step = env.number(source["every"], f"{where}.every")
        if step <= 0:
            raise FactError(f"{env.origin}: {where}: key '{source['every']}' must be positive, got {step}")
        offset = env.number(source.get("offset", f"{source['every']} - 1"), f"{where}.offset") % step
        return [kind if i % step == offset else other for i in range(layers)]
    first = env.number(source["first"], f"{where}.first")
    return [kind if i < first else other for i in range(layers)]


def _module(env: _Env, raw: dict[str, Any], where: str) -> LayerModule:
    w = f"{where} module {raw['name']!r}"
    bias = raw.get("bias", False)
    active = raw.get("active_count")
    return LayerModule(
        name=raw["name"], kind=raw.get("kind", "linear"), in_features=env.number(raw["in"], f"{w} in"),
        out_features=env.number(raw["out"], f"{w} out"), count=env.number(raw.get("count", 1), f"{w} count"),
        bias=bool(env.value(bias, f"{w} bias")), mlp=raw.get("mlp"), targets=tuple(raw.get("targets", ())),
        active_count=None if active is None else env.number(active, f"{w} active_count"))


def with_defaults(cfg: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """config.json over the family's defaults; a key set to null takes the default, as unset, but for
    the description's ``nullable`` keys, whose null switches a feature off (Llama 4's attention_chunk_size)."""
    keep = set(spec.get("nullable", ()))
    return {**spec.get("defaults", {}), **{k: v for k, v in cfg.items() if v is not None or k in keep}}


def layout(cfg: dict[str, Any], spec: dict[str, Any], family: str, origin: str) -> Layout:
    """Evaluate a family's ``layers`` description against ``cfg`` (config.json; the family's defaults
    fill what it omits)."""
    cfg = with_defaults(cfg, spec)
    env = _Env(cfg, spec.get("dims", {}), origin)
    layers = env.number("num_hidden_layers", "num_hidden_layers")
    if not 0 < layers <= MAX_LAYERS:
        raise FactError(f"{origin}: key 'num_hidden_layers' is {layers}, not a plausible layer count "
                        f"(1 to {MAX_LAYERS:.0e})", hint="check the config.json")
    for n, refusal in enumerate(spec.get("refuse", ())):
        # a layout the description does not cover (Mistral Large 4's KV sharing): said, not miscounted
        if env.value(refusal["when"], f"family {family} layers.refuse[{n}]"):
            raise FactError(f"{origin}: {refusal['says']}", hint="its parameter count is not described; "
                            "pass a config.json without it, or judge it with the generic rule")
    per_layer: list[list[str]] = []
    for n, slot in enumerate(spec["slots"]):
        for alt, source in enumerate(slot):
            kinds = _assign(env, source, layers, f"family {family} layers.slots[{n}][{alt}]")
            if kinds is not None:
                per_layer.append(kinds)
                break
        else:
            keys = ", ".join(str(s.get("list") or s.get("pattern") or s.get("every") or s.get("first")
                                 or s.get("indices")) for s in slot)
            raise FactError(f"{origin}: none of the keys that say which layers are which is set: {keys}",
                            hint="is this the config.json of the family it names (model_type)?")
    counted = Counter(kind for kinds in per_layer for kind in kinds)
    described = spec["kinds"]
    for kind in counted:
        if kind not in described:
            raise FactError(f"{origin}: layer kind {kind!r} is not one family {family} knows "
                            f"({', '.join(sorted(described))})", hint="check the config.json's layer list")
    out: list[LayerKind] = []
    for kid, raw in described.items():
        if not counted.get(kid):
            continue
        where = f"family {family} layers.kinds.{kid}"
        modules = tuple(_module(env, m, where) for m in raw.get("modules", ()))
        out.append(LayerKind(id=kid, layers=counted[kid], modules=modules,
                             kv_per_token=env.number(raw.get("kv_per_token", 0), f"{where} kv_per_token"),
                             state=env.number(raw.get("state", 0), f"{where} state"),
                             window=env.number(raw.get("window", 0), f"{where} window")))
    outer = tuple(_module(env, m, f"family {family} layers.outer") for m in spec.get("outer", ()))
    norms = env.number(spec.get("norms_per_layer", 0), f"family {family} layers.norms_per_layer")
    h = env.number("hidden_size", "hidden_size")
    vocab = env.number("vocab_size", "vocab_size")
    final = env.number(spec.get("final_norm", "hidden_size"), f"family {family} layers.final_norm")
    tied = bool(env.value(spec.get("tied", "tie_word_embeddings"), f"family {family} layers.tied"))
    held = vocab * h * (1 if tied else 2) + final + layers * norms + sum(m.params for m in outer)
    total = held + sum(k.layers * sum(m.params for m in k.modules) for k in out)
    active = held + sum(k.layers * sum(m.active_params for m in k.modules) for k in out)
    facts = {name: env.number(text, f"family {family} layers.facts.{name}") for name, text in spec.get("facts", {}).items()}
    return Layout(total=total, active=active, kinds=tuple(out), outer=outer, facts=facts, norms=norms,
                  final_norm=final)


def sliding_layers(cfg: dict[str, Any], blocks: list[dict[str, Any]], model_type: str, family: str,
                   origin: str) -> tuple[int, int]:
    """Uniform layers with sliding-window attention (a family's ``sliding`` blocks): how many layers
    cache only their window while generating, and the window; (0, 0) when none do. The first block
    naming ``model_type`` (or naming none) applies. Its defaults fill only the keys config.json omits:
    a key set to null stays null, as transformers reads it (Mistral v0.3's sliding_window: no window)."""
    n = next((i for i, b in enumerate(blocks) if model_type in b.get("model_types", [model_type])), None)
    if n is None:
        return 0, 0
    block = blocks[n]
    where = f"family {family} sliding[{n}]"
    env = _Env({**block.get("defaults", {}), **cfg}, {}, origin)
    window = env.number(block["window"], f"{where}.window")
    if not window:
        return 0, 0
    layers = env.number("num_hidden_layers", "num_hidden_layers")
    for alt, source in enumerate(block["layers"]):
        kinds = _assign(env, source, layers, f"{where}.layers[{alt}]")
        if kinds is not None:
            break
    else:
        return 0, 0
    odd = sorted(set(kinds) - {"sliding", "full"})
    if odd:
        raise FactError(f"{origin}: layer kind {odd[0]!r} is neither sliding nor full attention",
                        hint="check the config.json's layer list")
    return kinds.count("sliding"), window
