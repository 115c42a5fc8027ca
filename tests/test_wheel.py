"""rules/ and schemas/ ship inside the wheel: a non-editable install runs `advisor recommend`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_non_editable_wheel_runs_recommend(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(REPO)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(dist.glob("llm_finetune_advisor-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "advisor/rules/lora.yaml" in names and "advisor/schemas/rules.schema.json" in names
    # The probe's built-in corpus and its report schema ship too: a probe runs without --data.
    assert "advisor/probe/data/pydoc_topics.jsonl.gz" in names and "advisor/probe/data/PROVENANCE.md" in names
    assert "advisor/schemas/probe-report.schema.json" in names

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # Run from an empty directory with the installed copy first on the path: no checkout to lean on.
    env = {**os.environ, "PYTHONPATH": str(target)}
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    where = subprocess.run([sys.executable, "-c", "import advisor, advisor.paths as p; print(advisor.__file__); "
                            "print(p.rules_dir())"], capture_output=True, text=True, cwd=workdir, env=env, check=False)
    assert str(target) in where.stdout.splitlines()[0]
    assert str(target) in where.stdout.splitlines()[1]
    proc = subprocess.run(
        [sys.executable, "-m", "advisor", "recommend", "--model", "llama-8b", "--method", "grpo", "--no-detect",
         "--format", "json"],
        capture_output=True, text=True, cwd=workdir, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["parameters"]["num_generations"]["value"] == 8
