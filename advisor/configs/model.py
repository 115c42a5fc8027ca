"""The normalized TrainingConfig every reader produces (schema: schemas/training-config.schema.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.registries import format_ids

FORMATS = format_ids()  # rules/registry/formats.yaml


@dataclass(frozen=True)
class ConfigValue:
    value: Any
    key: str  # the key path as the file writes it, e.g. "training.learning_rate" or "lora_r"
    line: int | None = None


@dataclass
class TrainingConfig:
    path: Path
    format: str
    values: dict[str, ConfigValue] = field(default_factory=dict)
    model: ConfigValue | None = None
    method: ConfigValue | None = None  # normalized: sft | dpo | grpo | ppo | raft, or the file's own word
    peft: ConfigValue | None = None  # lora | qlora | full
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def cv(v: ConfigValue | None) -> dict[str, Any] | None:
            return None if v is None else {"value": v.value, "key": v.key, "line": v.line}

        return {
            "path": str(self.path),
            "format": self.format,
            "model": cv(self.model),
            "method": cv(self.method),
            "peft": cv(self.peft),
            "values": {k: cv(v) for k, v in self.values.items()},
        }
