"""The normalized TrainingConfig every reader produces (schema: schemas/training-config.schema.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.provenance import Source, Sourced
from advisor.registries import format_ids

FORMATS = format_ids()  # rules/registry/formats.yaml


class ConfigValue(Sourced):
    """A value a config file sets: Sourced from the config, its detail the key path as the file
    writes it (e.g. "training.learning_rate" or "lora_r")."""

    def __init__(self, value: Any, key: str, line: int | None = None) -> None:
        super().__init__(value, Source.CONFIG, key, line)

    @property
    def key(self) -> str:
        return self.detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (ConfigValue, (self.value, self.detail, self.line))


MEANINGLESS = "check-config-meaningless-value"  # VCF010's rule: a value past its parameter's bounds, left unjudged
FROM_PATH = "check-config-read-from-path"  # VCF014's rule: the method or loss the file's path names


@dataclass(frozen=True)
class ReadAs:
    """A value the reader took as the trainer does, not as written (a duplicate key, Axolotl's
    gradient_checkpointing: offload, a fractional warmup_steps): validate reports it as a finding."""

    key: str
    line: int | None
    message: str
    rule: str = "check-config-read-as"  # the check that reports it (rules/config.yaml)
    rename: str | None = None  # the key --fix writes this one as (a retired key's replacement)


@dataclass
class TrainingConfig:
    path: Path
    format: str
    values: dict[str, ConfigValue] = field(default_factory=dict)
    model: ConfigValue | None = None
    method: ConfigValue | None = None  # normalized: sft | dpo | grpo | ppo | raft, or the file's own word
    peft: ConfigValue | None = None  # lora | qlora | full
    notes: list[str] = field(default_factory=list)
    read_as: list[ReadAs] = field(default_factory=list)
    # what the trainer derives from other keys, over the file's own value (Axolotl's eval_strategy: steps from
    # eval_steps with an eval set, no without one): the checks' trained.X read it
    derived: dict[str, Any] = field(default_factory=dict)

    @property
    def mesh(self) -> ConfigValue | None:
        """The first device-mesh size the file states (check rules with `at: mesh` report there)."""
        from advisor.facts.mesh import SIZES

        return next((self.values[name] for name in SIZES if name in self.values), None)

    def as_dict(self) -> dict[str, Any]:
        def cv(v: ConfigValue | None) -> dict[str, Any] | None:
            return None if v is None else {"value": v.value, "key": v.key, "line": v.line, "source": v.source.value}

        return {
            "path": str(self.path),
            "format": self.format,
            "model": cv(self.model),
            "method": cv(self.method),
            "peft": cv(self.peft),
            "values": {k: cv(v) for k, v in self.values.items()},
        }
