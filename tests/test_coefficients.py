"""Named data has one kind: coefficients, in `coefficients:` files and rules/memory.yaml's list alike.

One schema definition (schemas/defs.schema.json), one layering (a user directory replaces by id and
keeps the built-in integer / range), one accessor, and the ids each consumer's code reads are declared
(`requires:`) and checked when the rules load."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor.errors import RuleFileError
from advisor.memory.knowledge import knowledge
from advisor.paths import schemas_dir
from advisor.rulebook import formula as fml
from advisor.rulebook.load import Rulebook, load_rulebook
from tests.conftest import run_cli

ADVISOR = Path(__file__).resolve().parent.parent / "advisor"
SHARED = ("source", "sources", "note", "confidence", "coefficient")


def coefficient(cid: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "value": value, "unit": "u", "summary": "mine", "source": {"doc": "team wiki"},
            "confidence": "low", **extra}


def coefficients_file(directory: Path, *items: dict[str, Any], name: str = "mine.yaml", **top: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(yaml.safe_dump({"family": "mine", **top, "coefficients": list(items)}))
    return directory


def memory_file(directory: Path, *items: dict[str, Any], name: str = "mem.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(yaml.safe_dump({"memory": {"coefficients": list(items)}}))
    return directory


def rule_file(directory: Path, **rule: Any) -> Path:
    base = {"code": "MY001", "parameter": "learning_rate", "summary": "mine", "source": {"doc": "x"},
            "confidence": "low"}
    (directory / "r.yaml").write_text(yaml.safe_dump({"family": "mine", "description": "mine",
                                                      "rules": [{**base, **rule}]}))
    return directory


def load_error(*directories: Path) -> str:
    with pytest.raises(RuleFileError) as exc:
        load_rulebook(list(directories))
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- one table, one accessor ------------------------------------------------------------

def test_memory_and_sweep_coefficients_are_one_table(book: Rulebook) -> None:
    assert {"safety-margin", "nf4-bits", "sweep-steps", "lr-sft"} <= set(book.coefficients)
    assert "coefficients" not in book.memory
    nf4 = book.coefficient_info("nf4-bits")  # a formula value, evaluated
    assert nf4.value == pytest.approx(4.5) and nf4.unit == "bits per parameter"
    assert nf4.file == "built-in rules/memory.yaml" and nf4.confidence == "high" and len(nf4.sources) == 2
    assert book.coefficient("sweep-steps") == 80 and knowledge(book)["nf4-bits"] == pytest.approx(4.5)


def test_a_rule_formula_can_name_a_memory_coefficient(tmp_path: Path) -> None:
    """coef.NAME reaches every coefficient (before, only the `coefficients:` files' ones)."""
    rule_file(tmp_path, id="my-check", kind="check", severity="info", message="too high",
              fail="config.learning_rate > coef.bytes_16bit * 1.0e-3")
    book = load_rulebook([tmp_path])
    assert "coef.bytes_16bit" in book.rules["my-check"].reads() and book.coefficient("bytes-16bit") == 2


# --- duplicates are load errors ------------------------------------------------------------

def test_one_id_in_a_coefficients_file_and_a_memory_file_of_one_directory_is_an_error(tmp_path: Path) -> None:
    d = memory_file(coefficients_file(tmp_path, coefficient("team-factor", 1)), coefficient("team-factor", 2))
    message = load_error(d)
    assert "coefficient 'team-factor' key 'id': already defined in" in message and "mem.yaml" in message


def test_one_id_twice_in_one_file_is_an_error(tmp_path: Path) -> None:
    d = coefficients_file(tmp_path, coefficient("team-factor", 1), coefficient("team-factor", 2))
    assert "'team-factor' key 'id': already defined in this file" in load_error(d)


def test_a_coefficient_with_a_rules_id_is_an_error(tmp_path: Path, book: Rulebook) -> None:
    rid = next(iter(book.rules))
    message = load_error(coefficients_file(tmp_path, coefficient(rid, 1)))
    assert f"coefficient {rid!r} key 'id'" in message and "rule has the same id" in message


def test_a_user_directory_replaces_a_memory_coefficient_from_either_kind_of_file(tmp_path: Path) -> None:
    for d in (memory_file(tmp_path / "m", coefficient("safety-margin", 0.5)),
              coefficients_file(tmp_path / "c", coefficient("safety-margin", 0.5))):
        book = load_rulebook([d])
        assert book.coefficient("safety-margin") == 0.5 and str(d) in book.coefficients["safety-margin"]["_file"]
        assert knowledge(book)["safety-margin"] == 0.5


# --- a replacement keeps the built-in constraints -----------------------------------------

@pytest.mark.parametrize("write", [memory_file, coefficients_file])
def test_a_replaced_memory_coefficient_keeps_its_integer_and_range(tmp_path: Path, write: Any) -> None:
    assert "must be a whole number" in load_error(write(tmp_path / "a", coefficient("max-micro-batch", 2.5)))
    message = load_error(write(tmp_path / "b", coefficient("safety-margin", 1.5)))
    assert "'safety-margin' key 'value': 1.5 is outside its range [0, 0.9]" in message
    # a formula value is checked once evaluated
    assert "outside its range" in load_error(write(tmp_path / "c", coefficient("safety-margin", "0.5 + 0.5")))


def test_a_coefficient_formula_is_plain_arithmetic(tmp_path: Path) -> None:
    book = load_rulebook([coefficients_file(tmp_path / "ok", coefficient("sweep-steps", "2 * 40"))])
    assert book.coefficient("sweep-steps") == 80
    message = load_error(coefficients_file(tmp_path / "fact", coefficient("team-factor", "model.params_b * 2")))
    assert "'team-factor' key 'value'" in message and "reads model.params_b" in message
    assert "key 'value'" in load_error(coefficients_file(tmp_path / "bad", coefficient("team-factor", "1 +")))
    assert "not a number" in load_error(coefficients_file(tmp_path / "bool", coefficient("team-factor", "1 < 2")))


# --- consumers declare what they read ----------------------------------------------------------

def test_a_misspelt_required_id_fails_at_load_naming_consumer_and_id(tmp_path: Path) -> None:
    d = coefficients_file(tmp_path, coefficient("team-factor", 1), requires={"memory": ["bytes-16bt"]})
    message = load_error(d)
    assert "consumer 'memory' key 'requires.memory[0]': no coefficient 'bytes-16bt'" in message
    assert "did you mean bytes-16bit" in message and "mine.yaml" in message


def test_the_built_in_consumers_declare_their_coefficients(book: Rulebook) -> None:
    assert {"memory", "sweep", "rules-fit"} <= set(book.requires)
    assert "vllm-colocate-default-share" in book.required("memory")  # the hand-kept tuple had missed it
    assert {"sweep-steps", "halving-candidates"} <= book.required("sweep")
    assert {"fit-huber", "lr-sft"} <= book.required("rules-fit")


def test_the_memory_model_reads_only_declared_coefficients(book: Rulebook) -> None:
    know = knowledge(book)
    assert know["bytes-16bit"] == 2
    with pytest.raises(KeyError, match="sweep-steps"):
        know["sweep-steps"]  # defined, but not one the memory model declares


def _string_constants() -> list[tuple[Path, ast.Constant]]:
    found = []
    for path in sorted(ADVISOR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append((path, node))
    return found


def test_every_coefficient_id_the_code_names_is_declared(book: Rulebook) -> None:
    declared = set().union(*(book.required(c) for c in book.requires))
    named = {(p.relative_to(ADVISOR).as_posix(), n.value) for p, n in _string_constants()
             if n.value in book.coefficients}
    assert named, "the scan found no coefficient ids in advisor/"
    undeclared = sorted(f"{path}: {cid}" for path, cid in named if cid not in declared)
    assert not undeclared, f"add these to a `requires:` list in rules/: {undeclared}"


KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")
READERS = {"coefficient", "coefficient_info", "c"}  # sweep/analysis.py: c = book.coefficient
HOLDERS = {"k", "know"}  # the memory model's Knowledge


def test_every_literal_id_the_code_reads_is_a_declared_coefficient(book: Rulebook) -> None:
    """A misspelt id in code fails here, not at a user's first run."""
    declared = set().union(*(book.required(c) for c in book.requires))
    reads: list[tuple[str, str]] = []
    for path in sorted(ADVISOR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            key: ast.expr | None = None
            if isinstance(node, ast.Call) and len(node.args) == 1:
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
                key = node.args[0] if name in READERS else None
            elif isinstance(node, ast.Subscript):
                holder = node.value
                name = holder.attr if isinstance(holder, ast.Attribute) else holder.id if isinstance(
                    holder, ast.Name) else holder.func.id if isinstance(holder, ast.Call) and isinstance(
                    holder.func, ast.Name) else ""
                key = node.slice if name in HOLDERS | {"knowledge"} else None
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and KEBAB.match(key.value):
                reads.append((path.relative_to(ADVISOR).as_posix(), key.value))
    assert len(reads) > 20, "the scan found too few reads to be looking at the code"
    assert not [r for r in reads if r[1] not in declared]


def test_every_built_in_coefficient_is_read(book: Rulebook) -> None:
    """By code (a `requires:` list), a rule (coef.NAME) or the memory model's tables: none is stale."""
    read = set().union(*(book.required(c) for c in book.requires))
    read |= {fml.coefficient_id(n) for r in book.rules.values() for n in r.reads() if n.startswith("coef.")}
    read |= {o[key] for o in book.optimizers.values() for key in ("states", "step") if o.get(key)}
    read |= {a["logits"] for a in book.memory["architectures"].values() if "logits" in a}
    assert sorted(set(book.coefficients) - read) == []


# --- one schema definition, referenced ----------------------------------------------------------

def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    return [r for v in node for r in _refs(v)] if isinstance(node, list) else []


def test_shared_definitions_live_once_and_every_ref_resolves() -> None:
    from referencing import Registry, Resource

    schemas = {p.name: json.loads(p.read_text()) for p in schemas_dir().glob("*.schema.json")}
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    for name, schema in schemas.items():
        if name != "defs.schema.json":
            assert not set(schema.get("$defs", {})) & set(SHARED), f"{name} redefines a shared definition"
        resolver = registry.resolver(base_uri=schema["$id"])
        for ref in _refs(schema):
            resolver.lookup(ref)  # raises on a dangling $ref
    for name in ("rules.schema.json", "coefficients.schema.json", "memory.schema.json"):
        assert "defs.schema.json#/$defs/" in (schemas_dir() / name).read_text()


@pytest.mark.parametrize("write", [memory_file, coefficients_file])
def test_a_bad_source_or_confidence_is_one_line_naming_file_and_key(tmp_path: Path, write: Any) -> None:
    where = "memory.coefficients[0]" if write is memory_file else "coefficients[0]"
    message = load_error(write(tmp_path / "conf", coefficient("team-factor", 1, confidence="sure")))
    assert f"key '{where}.confidence'" in message and "'sure' is not one of" in message
    message = load_error(write(tmp_path / "src", coefficient("team-factor", 1, source={"website": "x"})))
    assert f"key '{where}.source'" in message and str(tmp_path / "src") in message


def test_a_bad_source_in_a_rule_file_names_file_rule_and_key(tmp_path: Path) -> None:
    rule_file(tmp_path, id="my-lr", kind="recommend", default=1.0e-4, source={"website": "x"})
    message = load_error(tmp_path)
    assert "r.yaml: rule 'my-lr' key 'rules[0].source'" in message


# --- the command line ------------------------------------------------------------------------

def test_rules_show_prints_a_memory_coefficient_with_its_source() -> None:
    proc = run_cli("rules", "show", "safety-margin")
    assert proc.returncode == 0, proc.stderr
    assert "coefficient safety-margin" in proc.stdout and "built-in rules/memory.yaml" in proc.stdout
    assert "source: advisor: a margin for what the model does not see" in proc.stdout
    assert "accepted range: 0 – 0.9" in proc.stdout


def test_rules_show_suggests_a_memory_coefficient() -> None:
    proc = run_cli("rules", "show", "safety-margn")
    assert proc.returncode == 2 and "safety-margin" in proc.stderr
