"""Reliability (issue 16): no input ends in an internal error or a hang.

Property-based over every reader (each trainer format through validate, model config.json, the
log readers through diagnose), the formula language and --set parsing; then a corpus of
adversarial files (tests/fixtures/adversarial/) and special files made here. Each call must
return, or raise an AdvisorError naming its input, within tests/fuzzing.py's TIME_LIMIT_S.

The Hypothesis profile "ci" (the default) keeps this file to seconds; HYPOTHESIS_PROFILE=thorough
runs many more examples, and bench/fuzz.py runs 10,000+ per entry point and prints the counts.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.configs.document import ConfigError, read_document
from advisor.errors import AdvisorError, FormulaError, RuleFileError
from advisor.facts.model import resolve_model
from advisor.rulebook import conditions as cond
from advisor.rulebook import formula as fml
from advisor.rulebook.load import load_rulebook
from advisor.telemetry import read_log
from tests.conftest import run_cli
from tests.fuzzing import ENTRY_POINTS, book, classify

CORPUS = Path(__file__).parent / "fixtures" / "adversarial"

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SCRATCH = Path(tempfile.mkdtemp(prefix="advisor-fuzz-"))


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
@given(data=st.data())
def test_no_internal_error_and_no_hang(name: str, data: st.DataObject) -> None:
    strategy, entry = ENTRY_POINTS[name]
    drawn = data.draw(strategy)
    scratch = SCRATCH / name.replace(":", "-").replace(" ", "-")
    scratch.mkdir(exist_ok=True)
    call, names = entry(drawn, scratch)
    outcome = classify(call, names)
    assert outcome.kind in ("ok", "error"), f"{name}: {outcome.kind}: {outcome.detail}"


# --- the adversarial corpus ---------------------------------------------------------------

CONFIG_ERRORS = {
    "alias-bomb.yaml": "YAML aliases expand to more than",
    "recursive-alias.yaml": "recursive alias",
    "deep-nesting.json": "nested",
    "deep-block.yaml": "nested more than",
    "huge-int.yaml": "is not a float",
    "huge-digits.yaml": "too many digits",
    "tag-bool.yaml": "'maybe' is not a valid bool",
    "tag-float.yaml": "'x' is not a valid float",
    "tag-int.yaml": "'x' is not a valid int",
    "tag-set-key.yaml": "a mapping key must be a plain word or number",
    "long-value.yaml": "converts it as a float, and that refuses it",
    "latin1.yaml": "not UTF-8 text",
    "nul.yaml": "binary file",
}


@pytest.mark.parametrize(("name", "needle"), sorted(CONFIG_ERRORS.items()))
def test_adversarial_configs_end_in_one_readable_line(name: str, needle: str) -> None:
    path = CORPUS / name
    outcome = classify(lambda: _validate(path), str(path))
    assert outcome.kind == "error", outcome
    assert needle in outcome.detail and len(outcome.detail) < 600 and "\n" not in outcome.detail


def _validate(path: Path) -> None:
    from advisor.facts.hardware import resolve_gpu
    from advisor.validate import Overrides, Selection, validate_file

    gpu = resolve_gpu(book(), name=None, memory_gb=None, count=None, detect=False)
    report = validate_file(path, book(), gpu, Overrides(), Selection())
    if report.error:
        raise ConfigError(report.error)


@pytest.mark.parametrize("name", ["bom.yaml", "duplicate-same.yaml", "duplicate-different.yaml", "long-base-model.yaml"])
def test_legitimate_oddities_are_read(name: str) -> None:
    doc = read_document(CORPUS / name)
    assert doc.data  # a byte-order mark, a key repeated with its own value, a model name no file can have
    _validate(CORPUS / name)


def test_duplicate_key_with_the_same_value_keeps_its_first_line() -> None:
    doc = read_document(CORPUS / "duplicate-same.yaml")
    assert doc.data["learning_rate"] == 2e-5 and doc.line_of(("learning_rate",)) == 2


@pytest.mark.parametrize(("name", "needle"), [
    ("inf-step.jsonl", "inf-step.jsonl:1: key 'step': inf is not a step number"),
    ("inf-step.csv", "inf-step.csv:2: key 'step': 'inf' is not a step number"),
])
def test_infinite_steps_are_named(name: str, needle: str) -> None:
    with pytest.raises(AdvisorError, match=needle):
        read_log(CORPUS / name)


def test_a_bom_csv_and_huge_losses_are_read() -> None:
    from advisor.diagnose import diagnose
    from advisor.output import fmt_number

    assert len(read_log(CORPUS / "bom.csv").series["loss"]) == 30
    tel = read_log(CORPUS / "huge-loss.jsonl")
    assert tel.series["loss"] == [float("inf")] * 3  # SIG009 counts them
    diagnose(book(), tel)  # the evidence text states inf values
    assert [fmt_number(x) for x in (float("inf"), float("-inf"), float("nan"))] == ["inf", "-inf", "nan"]


@pytest.mark.parametrize(("name", "needle"), [
    ("model-nan-experts.json", "key 'num_local_experts' must be a positive integer, got nan"),
    ("model-infinite-experts.json", "key 'num_local_experts' must be a positive integer, got inf"),
    ("model-list-experts.json", "key 'num_local_experts' must be a positive integer, got [8]"),
    ("model-huge-hidden.json", "key 'hidden_size' is 1000000000000, not a plausible model dimension"),
])
def test_malformed_model_configs_are_one_line(name: str, needle: str) -> None:
    with pytest.raises(AdvisorError) as info:
        resolve_model(str(CORPUS / name), book())
    assert needle in str(info.value) and str(CORPUS / name) in str(info.value)


def test_rule_files_with_an_alias_bomb_are_refused_at_once() -> None:
    outcome = classify(lambda: load_rulebook([CORPUS / "rules-alias-bomb"]), "bomb.yaml")
    assert outcome.kind == "error" and "YAML aliases expand" in outcome.detail


@pytest.mark.parametrize(("name", "needle"), [
    ("f1", "213-bit integer ** 64"), ("f2", "repeating 1 items 1000000000 times"),
    ("f3", "repeating 1 items 100000000 times"), ("f4", "longer than 2000 characters"),
    ("when-deep", "nested more than"),
])
def test_runaway_formulas_are_load_errors(name: str, needle: str) -> None:
    outcome = classify(lambda: load_rulebook([CORPUS / "rules-formulas" / name]), "rule.yaml")
    assert outcome.kind == "error" and needle in outcome.detail, outcome
    assert len(outcome.detail) < 700  # the 100 KB formula is not echoed


def test_conditions_and_formulas_bound_their_depth() -> None:
    deep: dict[str, object] = {"fact": "task.method", "op": "eq", "value": "sft"}
    for _ in range(cond.MAX_DEPTH + 1):
        deep = {"not": deep}
    with pytest.raises(FormulaError, match="deeper than"):
        cond.parse(deep)
    with pytest.raises(FormulaError, match="nests deeper than"):
        fml.parse("-" * 100 + "1")
    assert fml.parse("-" * 10 + "1").evaluate(lambda n: 0) == 1  # shallow nesting is fine


@pytest.mark.parametrize(("text", "needle"), [
    ("(((10**64)**64)**64)**64", "213-bit integer"), ("'a' * 10**9", "past the limit"),
    ("[1] * 10**8", "past the limit"), ("'%0999999d' % 1", "string formatting"), ("2**64**64", "exponent"),
])
def test_formula_bounds_hold_at_parse(text: str, needle: str) -> None:
    with pytest.raises(FormulaError, match=needle):
        fml.parse(text)


def test_formula_bounds_hold_at_run_time() -> None:
    f = fml.parse("value ** 64 * value ** 64")  # reads a fact: nothing to fold at parse
    with pytest.raises(FormulaError, match="formula"):
        f.evaluate(lambda n: 10**64)
    assert fml.parse("value * 2").evaluate(lambda n: 21) == 42


# --- special files and names ----------------------------------------------------------------

def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    for call in (lambda: read_document(fifo), lambda: read_log(fifo.rename(tmp_path / "log.jsonl"))):
        outcome = classify(call, str(tmp_path))
        assert outcome.kind == "error" and "FIFO" in outcome.detail, outcome


@pytest.mark.parametrize("device", ["/dev/zero", "/proc/self/mem"])
def test_devices_and_proc_files_are_not_read_forever(device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    for call in (lambda: read_document(Path(device)), lambda: resolve_model(device, book())):
        outcome = classify(call, device)
        assert outcome.kind == "error", outcome


def test_a_symlink_loop_has_its_own_message(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match="symbolic link loop"):
        read_document(loop)


def test_names_longer_than_a_file_system_holds() -> None:
    with pytest.raises(AdvisorError, match="longer than a file system holds"):
        resolve_model("x" * 300, book())


# --- output targets (the CLI) ---------------------------------------------------------------

def test_output_targets_that_are_not_regular_files(tmp_path: Path) -> None:
    base = ("recommend", "--model", "llama-8b", "--method", "sft", "--no-detect")
    before = os.stat("/dev/full")
    proc = run_cli(*base, "-o", "/dev/full")
    assert proc.returncode == 2 and "character device" in proc.stderr
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode) and os.stat("/dev/full").st_ino == before.st_ino
    for target, needle in ((str(tmp_path), "is a directory"), ("", "empty"),
                           (str(tmp_path / "missing" / "x.txt"), "does not exist")):
        proc = run_cli(*base, "-o", target)
        assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    dash = run_cli(*base, "-o", "-", "--format", "json")
    assert dash.returncode == 0 and dash.stdout.startswith("{") and not Path("-").exists()


def test_fix_and_plot_into_a_directory_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nlearning_rate: 2.0e-4\n")
    fix = run_cli("validate", str(config), "--no-detect", "--fix", str(tmp_path))
    assert fix.returncode == 2 and "is a directory" in fix.stderr.splitlines()[-1]
    plot = run_cli("schedule", "--plot", str(tmp_path))
    assert plot.returncode == 2 and "is a directory" in plot.stderr


def test_write_atomic_refuses_a_read_only_directory(tmp_path: Path) -> None:
    from advisor.output import write_atomic

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(AdvisorError, match="not writable"):
        write_atomic(ro / "x.txt", "x")


def test_rules_check_and_recommend_refuse_an_alias_bomb() -> None:
    bomb = str(CORPUS / "rules-alias-bomb")
    for args in (("rules", "check", bomb), ("recommend", "--model", "llama-8b", "--method", "sft", "--no-detect",
                                            "--rules", bomb)):
        proc = run_cli(*args)
        assert proc.returncode == 2 and "YAML aliases expand" in proc.stderr, proc.stderr
    formula = run_cli("rules", "check", str(CORPUS / "rules-formulas" / "f2"))
    assert formula.returncode == 2 and "past the limit" in formula.stderr


# --- internal errors are reported usefully ----------------------------------------------------

def test_debug_prints_the_traceback_of_an_internal_error(tmp_path: Path) -> None:
    # No input makes an internal error any more (that is the point of this file): make one by
    # breaking the renderer the command calls, in the child process only.
    script = ("import sys; from advisor import cli\n"
              "def boom(*a, **k): raise RuntimeError('x' * 5000)\n"
              "import advisor.render.emit as e; e.emit = boom\n"
              "cli.main(sys.argv[1:])\n")
    args = ["recommend", "--model", "llama-8b", "--method", "sft", "--no-detect"]
    import subprocess
    import sys

    plain = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=False)
    assert plain.returncode == 2 and "please report this" in plain.stderr and "Traceback" not in plain.stderr
    assert len(plain.stderr) < 600 and "--debug" in plain.stderr
    for extra, env in ((["--debug"], {}), ([], {"ADVISOR_DEBUG": "1"})):
        proc = subprocess.run([sys.executable, "-c", script, *extra, *args], capture_output=True, text=True,
                              check=False, env={**os.environ, **env})
        assert proc.returncode == 2 and "Traceback" in proc.stderr and "RuntimeError" in proc.stderr
        assert "please report this" in proc.stderr


def test_a_rule_file_error_never_echoes_the_whole_input() -> None:
    with pytest.raises(RuleFileError) as info:
        load_rulebook([CORPUS / "rules-formulas" / "f4"])
    assert len(str(info.value)) < 700
