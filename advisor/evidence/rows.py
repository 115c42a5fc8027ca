"""Evidence rows: published fine-tuning runs, one independent source per file.

They live in ``evidence/`` beside the rule files (built-in ``rules/evidence/``, and the same
folder in any ``--rules`` directory, whose rows are added). Nothing on the start-up path
reads them: only ``advisor rules fit``, ``advisor evidence``, ``rules show`` and the scoring
bench do, so ``recommend`` pays nothing for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import RuleFileError
from advisor.paths import EVIDENCE_DIR, rules_dir, shown_path

SCHEMA = "evidence.schema.json"


@dataclass(frozen=True)
class EvidenceRow:
    """One published run. Optional facts are None where the source does not state them."""

    id: str
    source_id: str
    group: str  # the independence group: held out together when scoring (default: the source)
    file: str
    model_id: str
    params_b: float
    hidden_size: int
    method: str
    variant: str
    peft: str
    learning_rate: float
    tuned: bool
    kind: str
    citation: dict[str, str]
    active_params_b: float | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None
    effective_batch: int | None = None
    epochs: float | None = None
    max_steps: int | None = None
    dataset_size: int | None = None
    seq_len: int | None = None
    beta: float | None = None
    group_size: int | None = None
    temperature: float | None = None
    scheduler: str | None = None
    note: str | None = None

    @property
    def adapter(self) -> bool:
        return self.peft in ("lora", "qlora")

    def cite(self) -> str:
        """The citation in one line: repo path @ commit, paper section, or URL."""
        c = self.citation
        if "repo" in c:
            return f"{c['repo']} {c['path']} @ {c['commit'][:12]}"
        if "paper" in c:
            return f"{c['paper']}, {c['section']}"
        return c["url"]


def evidence_dirs(extra_dirs: Iterable[Path] = (), *, builtin: bool = True) -> list[Path]:
    """The evidence folders of the built-in rules and of each user rules directory that has one."""
    roots = ([rules_dir()] if builtin else []) + [Path(d) for d in extra_dirs]
    return [r / EVIDENCE_DIR for r in roots if (r / EVIDENCE_DIR).is_dir()]


def _row(raw: dict[str, Any], source_id: str, group: str, shown: str) -> EvidenceRow:
    model = raw["model"]
    optional = ("lora_rank", "lora_alpha", "effective_batch", "epochs", "max_steps", "dataset_size", "seq_len",
                "beta", "group_size", "temperature", "scheduler", "note")
    return EvidenceRow(
        id=raw["id"], source_id=source_id, group=group, file=shown, model_id=model["id"], params_b=float(model["params_b"]),
        hidden_size=int(model["hidden_size"]), active_params_b=model.get("active_params_b"),
        method=raw["method"], variant=raw["variant"], peft=raw["peft"], learning_rate=float(raw["learning_rate"]),
        tuned=bool(raw["tuned"]), kind=raw["kind"], citation=dict(raw["source"]),
        **{k: raw.get(k) for k in optional},
    )


def load_file(path: Path) -> tuple[str, list[EvidenceRow]]:
    """One evidence file, schema-checked: its source id and rows."""
    from advisor.rulebook.load import _schema_error, _validator, read_yaml

    data = read_yaml(path)
    if not isinstance(data, dict) or data.get("kind") != "evidence":
        raise RuleFileError(f"{path}: not an evidence file (expected 'kind: evidence' at the top level)",
                            hint="evidence files hold published runs; see rules/evidence/*.yaml")
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(SCHEMA).iter_errors(data))
    if error is not None:
        raise _schema_error(path, "rows", data, error)
    shown = shown_path(path)
    group = str(data.get("group") or data["source_id"])
    rows = [_row(raw, data["source_id"], group, shown) for raw in data["rows"]]
    if path.stem != data["source_id"]:
        raise RuleFileError(f"{path}: key 'source_id': {data['source_id']!r} differs from the file's name",
                            hint=f"name the file {data['source_id']}.yaml, one file per independent source")
    return data["source_id"], rows


def load_evidence(extra_dirs: Iterable[Path] = (), *, builtin: bool = True) -> list[EvidenceRow]:
    """Every evidence row; a row id or source id used twice is an error naming both files."""
    rows: list[EvidenceRow] = []
    seen_rows: dict[str, str] = {}
    seen_sources: dict[str, str] = {}
    for directory in evidence_dirs(extra_dirs, builtin=builtin):
        for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
            source_id, file_rows = load_file(path)
            if source_id in seen_sources:
                raise RuleFileError(f"{path}: key 'source_id': {source_id!r} is also the source of {seen_sources[source_id]}",
                                    hint="one file per independent source")
            seen_sources[source_id] = str(path)
            for row in file_rows:
                if row.id in seen_rows:
                    raise RuleFileError(f"{path}: row {row.id!r} key 'id': also a row of {seen_rows[row.id]}")
                seen_rows[row.id] = str(path)
                if not (math.isfinite(row.learning_rate) and row.learning_rate < 1):
                    raise RuleFileError(f"{path}: row {row.id!r} key 'learning_rate': {row.learning_rate!r} "
                                        "is not a learning rate", hint="a peak LR between 0 and 1, e.g. 2.0e-4")
            rows.extend(file_rows)
    return rows
