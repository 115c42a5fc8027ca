"""At 80 columns the ids a user must type stay whole: model ids and aliases, rule codes and ids,
GPU ids, the memory table's coefficient ids. Other columns wrap, or are left out with a note."""

from __future__ import annotations

import json
import re

from tests.conftest import run_cli

NARROW = {"COLUMNS": "80"}


def tokens(text: str) -> set[str]:
    return {t.strip(",") for t in re.split(r"\s+", text) if t.strip(",")}


def test_models_keeps_ids_and_aliases_whole_at_80_columns() -> None:
    out = run_cli("models", env=NARROW).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    listed = json.loads(run_cli("models", "--format", "json").stdout)
    words = tokens(out)
    missing = [name for m in listed for name in [m["name"], *m["aliases"]] if name not in words]
    assert missing == []
    assert "--format json has them all" in out  # the numbers columns that did not fit are named


def test_rules_list_keeps_codes_and_ids_whole_at_80_columns() -> None:
    out = run_cli("rules", "list", env=NARROW).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    words = tokens(out)
    rules = json.loads(run_cli("rules", "list", "--format", "json").stdout)
    assert [r["id"] for r in rules if r["id"] not in words] == []
    assert [r["code"] for r in rules if r["code"] not in words] == []


def test_memory_keeps_coefficient_ids_whole_at_80_columns() -> None:
    args = ("memory", "--model", "llama-8b", "--method", "sft", "--peft", "qlora", "--gpu", "rtx-4090")
    out = run_cli(*args, env=NARROW).stdout
    data = json.loads(run_cli(*args, "--format", "json").stdout)
    table = out[out.index("component"):]
    assert max(len(line) for line in table.splitlines()) <= 80
    words = tokens(table)
    ids = {c for item in data["items"] for c in item["sources"]}
    assert ids and sorted(ids - words) == []


def test_gpus_keeps_ids_whole_at_80_columns() -> None:
    out = run_cli("gpus", env=NARROW).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    gpus = json.loads(run_cli("gpus", "--format", "json").stdout)
    words = tokens(out)
    assert [g["id"] for g in gpus if g["id"] not in words] == []
