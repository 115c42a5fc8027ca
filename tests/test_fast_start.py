"""Standard 4: commands that do not train never import torch, transformers, peft or bitsandbytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "optuna", "matplotlib")

PROBE = """
import json, sys
from advisor.cli import main
args, heavy_names = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["advisor", *args]
code = None
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(heavy_names))
sys.stderr.write("HEAVY=" + json.dumps(heavy) + "\\n")
sys.stderr.write("CODE=" + json.dumps(code) + "\\n")
"""


@pytest.mark.parametrize(
    "args",
    [
        ["recommend", "--model", "llama-8b", "--method", "grpo", "--no-detect"],
        ["recommend", "--model", "qwen2.5-7b", "--method", "sft", "--peft", "qlora", "--gpu", "rtx-4090",
         "--format", "json"],
        ["rules", "list"],
        ["schedule", "--compare", "--cycles", "8"],
        ["validate", "examples/configs/trl-grpo-lora.yaml", "--no-detect"],
        ["models"],
        ["probe", "--help"],
        ["sweep", "--help"],
        ["memory", "--model", "llama-8b", "--method", "sft", "--peft", "qlora", "--gpu", "rtx-4090"],
    ],
)
def test_commands_do_not_import_heavy_packages(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY="))
    assert json.loads(line.removeprefix("HEAVY=")) == []
    code = next(ln for ln in proc.stderr.splitlines() if ln.startswith("CODE="))
    assert json.loads(code.removeprefix("CODE=")) in (0, None), proc.stderr
    assert proc.stdout  # the command really ran


LIBRARY = """
import json, sys
from advisor import api
from advisor.render.data import to_json
from advisor.rulebook import load_rulebook
rec = api.recommend(book=load_rulebook(), model="llama-8b", method="grpo", detect_gpu=False)
sys.stdout.write(to_json(rec))
sys.stderr.write("MODULES=" + json.dumps(sorted({m.split(".")[0] for m in sys.modules})) + "\\n")
"""
# What builds the rulebook (yaml, jsonschema), what the result classes once were (pydantic) and the
# command line's own libraries.
NOT_ON_A_CACHE_HIT = ("yaml", "jsonschema", "pydantic", "rich", "typer")


def test_recommend_on_a_warm_cache_imports_no_parser_or_validator(tmp_path: Path) -> None:
    """The library's recommend path, once the rulebook is cached, imports neither yaml nor jsonschema
    nor pydantic; the JSON output needs no rich."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    env.pop("ADVISOR_NO_CACHE", None)
    runs = [subprocess.run([sys.executable, "-c", LIBRARY], capture_output=True, text=True, timeout=120,
                           check=True, cwd=REPO, env=env) for _ in range(2)]  # the first fills the cache
    cold, warm = ({*json.loads(next(ln for ln in r.stderr.splitlines() if ln.startswith("MODULES="))
                               .removeprefix("MODULES="))} for r in runs)
    assert {"yaml", "jsonschema"} <= cold  # the first run really built the book
    assert warm & set(NOT_ON_A_CACHE_HIT) == set()
    assert runs[0].stdout == runs[1].stdout


def test_cli_recommend_on_a_warm_cache_skips_schema_validation(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    env.pop("ADVISOR_NO_CACHE", None)
    args = ["recommend", "--model", "llama-8b", "--method", "grpo", "--no-detect"]
    for _ in range(2):  # the first fills the cache
        proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(["jsonschema"])],
                              capture_output=True, text=True, timeout=120, check=False, cwd=REPO, env=env)
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY="))
    assert json.loads(line.removeprefix("HEAVY=")) == []
    assert proc.stdout
