"""Standard 4: commands that do not train never import torch, transformers, peft or bitsandbytes."""

from __future__ import annotations

import json
import subprocess
import sys

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
