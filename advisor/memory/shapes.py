"""Parameter counts from module shapes: totals, what bitsandbytes quantizes, and LoRA's trainable
parameters for the chosen target modules (real in / out features per module, fused or not)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from advisor.errors import RuleFileError
from advisor.facts.layers import LayerModule
from advisor.facts.model import ModelFacts
from advisor.memory.knowledge import Knowledge, evaluate


@dataclass(frozen=True)
class Module(LayerModule):
    """One module of a decoder layer (name, kind, in / out features, count per layer, bias, its place in
    the MLP, the per-expert names peft maps onto a fused parameter), and how many layers hold it."""

    layers: int | None = None  # None: every decoder layer; a layer kind's count otherwise (1: held once)


@dataclass(frozen=True)
class Counts:
    """Parameters of the whole model, by what happens to them in training."""

    layers: int
    modules: tuple[Module, ...]  # one decoder layer
    norms_per_layer: int
    embed: int
    head: int  # 0 when tied to the embedding
    final_norm: int
    architecture: str
    logits: str = "logits-bytes"  # coefficient id of the loss's bytes per logit element
    lora: int = 0
    lora_modules: tuple[str, ...] = field(default_factory=tuple)
    unmatched_targets: tuple[str, ...] = field(default_factory=tuple)

    def held(self, m: Module) -> int:
        """How many decoder layers hold ``m``: every one, or its layer kind's count."""
        return self.layers if m.layers is None else m.layers

    @property
    def linear_weights(self) -> int:
        """Weights of the decoder layers' nn.Linear modules: what bitsandbytes quantizes (biases stay)."""
        return sum(self.held(m) * m.count * m.in_features * m.out_features for m in self.modules if m.kind == "linear")

    @property
    def biases(self) -> int:
        """The nn.Linear modules' biases (experts and routers count theirs in their own params)."""
        return sum(self.held(m) * m.count * m.out_features for m in self.modules if m.bias and m.kind == "linear")

    @property
    def experts(self) -> int:
        return sum(self.held(m) * m.params for m in self.modules if m.kind == "experts")

    @property
    def other(self) -> int:
        """Everything outside the quantized linears and fused experts: embeddings, lm_head, norms, routers,
        plain parameters (attention sinks), biases."""
        plain = sum(self.held(m) * m.params for m in self.modules if m.kind in ("router", "parameter"))
        return self.embed + self.head + self.final_norm + self.layers * self.norms_per_layer + plain + self.biases

    @property
    def total(self) -> int:
        return self.linear_weights + self.experts + self.other

    def largest_linear(self) -> int:
        return max((m.in_features * m.out_features for m in self.modules if m.kind == "linear"), default=0)


def count(know: Knowledge, model: ModelFacts, targets: list[str] | None = None, rank: int = 0) -> Counts:
    """Counts for ``model``; with ``targets`` and ``rank``, LoRA's trainable parameters too.

    peft matches a target name against the last part of each module's name ("q_proj" matches
    "model.layers.0.self_attn.q_proj"); only nn.Linear modules (and lm_head) take an adapter.
    """
    arch = know.architecture(model.family, model.is_moe)
    if arch.get("layers") == "family":
        return _layered(arch, model, targets, rank)
    facts = model.as_facts()
    where = f"rules/memory.yaml architecture {arch['id']!r}"
    modules = []
    def num(raw: dict[str, Any], key: str, default: Any = None) -> int:
        return int(evaluate(raw.get(key, default), facts, f"{where} module {raw['name']!r} key {key!r}"))

    for raw in arch["modules"]:
        modules.append(Module(name=raw["name"], kind=raw.get("kind", "linear"), in_features=num(raw, "in"),
                              out_features=num(raw, "out"), count=num(raw, "count", 1), bias=bool(raw.get("bias", False)),
                              mlp=raw.get("mlp"), targets=tuple(raw.get("targets", ()))))
    h, vocab = model.hidden_size, model.vocab_size
    counts = Counts(layers=model.num_layers, modules=tuple(modules),
                    norms_per_layer=int(evaluate(arch["norms"], facts, f"{where} key 'norms'")),
                    embed=vocab * h, head=0 if model.tie_word_embeddings else vocab * h,
                    final_norm=h if "final_norm" not in arch  # an RMSNorm weight unless the architecture says
                    else int(evaluate(arch["final_norm"], facts, f"{where} key 'final_norm'")),
                    architecture=arch["id"], logits=arch.get("logits", "logits-bytes"))
    return _lora(counts, model, targets, rank)


def _layered(arch: dict[str, Any], model: ModelFacts, targets: list[str] | None, rank: int) -> Counts:
    """Layers not all alike: each layer kind's modules, held by that kind's layers (rules/families.yaml
    `layers`, evaluated with the model's facts by advisor/facts/layers.py)."""
    if not model.layer_kinds:
        raise RuleFileError(f"rules/memory.yaml architecture {arch['id']!r}: family {model.family!r} has no "
                            "`layers` description in rules/families.yaml", hint="add one, or list its modules here")
    modules = tuple(Module(**asdict(m), layers=kind.layers) for kind in model.layer_kinds for m in kind.modules)
    # modules outside the decoder layers (Gemma's per-layer embedding table and projections): held once
    modules += tuple(Module(**asdict(m), layers=1) for m in model.outer_modules)
    h, vocab = model.hidden_size, model.vocab_size
    counts = Counts(layers=model.num_layers, modules=modules, norms_per_layer=model.layer_norms, embed=vocab * h,
                    head=0 if model.tie_word_embeddings else vocab * h, final_norm=model.final_norm,
                    architecture=arch["id"], logits=arch.get("logits", "logits-bytes"))
    return _lora(counts, model, targets, rank)


def _lora(counts: Counts, model: ModelFacts, targets: list[str] | None, rank: int) -> Counts:
    """``counts`` with LoRA's trainable parameters for ``targets`` at ``rank``."""
    if not targets or rank <= 0:
        return counts
    h, vocab = model.hidden_size, model.vocab_size
    modules = counts.modules
    lora = 0
    hit: set[str] = set()
    every = "all-linear" in targets  # peft's shorthand: every linear layer but the output layer
    # The per-expert names peft converts onto fused expert parameters (transformers' conversion mapping)
    # adapt those parameters only: an nn.Linear of the same name (a dense layer's or the shared expert's
    # gate_proj) is then left without an adapter (measured: tests/test_layered.py against peft).
    converted = {t for m in modules if m.kind == "experts" and m.targets and all(t in targets for t in m.targets)
                 for t in m.targets}
    for m in modules:
        last = m.name.rsplit(".", 1)[-1]
        if not m.count:  # a module the config switches off (DeepSeek's q_a_proj without q_lora_rank)
            continue
        if last in converted and m.kind == "linear":
            continue
        if m.kind == "linear" and (every or m.name in targets or last in targets):
            lora += counts.held(m) * m.count * rank * (m.in_features + m.out_features)
            hit.add(last)
        elif m.kind == "experts" and m.targets and all(t in targets for t in m.targets):
            # peft converts the per-expert names onto the fused parameter, one rank per fused name
            lora += counts.held(m) * m.count * len(m.targets) * rank * (m.in_features + m.out_features)
            hit.update(m.targets)
    output = "lm_head"
    if output in targets:
        lora += rank * (h + vocab)
        hit.add(output)
    unmatched = tuple(t for t in targets if t not in hit and t != "all-linear")
    return replace(counts, lora=lora, lora_modules=tuple(sorted(hit)), unmatched_targets=unmatched)
