"""The method, optimizer and trainer-format registries (rules/registry/): the schemas' enums, the
readers and the memory model agree with them, and a user rules directory layers only what is data."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from advisor import registries
from advisor.configs.readers import READERS, detect_format
from advisor.errors import RuleFileError
from advisor.facts.task import FACT_FLAGS, TaskFacts
from advisor.memory.knowledge import Knowledge
from advisor.paths import schemas_dir
from advisor.rulebook.load import Rulebook, load_rulebook


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((schemas_dir() / name).read_text())
    return loaded


def _at(doc: Any, *path: str | int) -> Any:
    for step in path:
        doc = doc[step]
    return doc


METHOD_ENUMS = [
    ("variants.schema.json", ("properties", "variants", "items", "properties", "method", "enum")),
    ("probe-report.schema.json", ("properties", "plan", "properties", "method", "enum")),
    ("defs.schema.json", ("$defs", "coefficient", "properties", "fit", "properties", "select", "properties",
                          "method", "enum")),
    ("evidence.schema.json", ("$defs", "row", "properties", "method", "enum")),
]
VARIANT_ENUM = ("evidence.schema.json", ("$defs", "row", "properties", "variant", "enum"))
TRAINER_KEYS_ENUM = ("parameters.schema.json", ("properties", "parameters", "items", "properties", "trainer_keys",
                                                "propertyNames", "enum"))
FORMAT_ENUM = ("training-config.schema.json", ("properties", "format", "enum"))


@pytest.mark.parametrize(("name", "path"), METHOD_ENUMS, ids=[n for n, _ in METHOD_ENUMS])
def test_every_schema_enum_of_methods_is_the_method_registry(name: str, path: tuple[str, ...]) -> None:
    schema = _schema(name)
    try:
        enum = _at(schema, *path)
    except (KeyError, IndexError, TypeError):
        found = [p for p in _enum_paths(schema) if "sft" in _at(schema, *p)]
        pytest.fail(f"{name}: the method enum moved; enums holding 'sft' are at {found}")
    assert enum == list(registries.method_ids())


def _enum_paths(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(doc, dict):
        out = [(*path, "enum")] if isinstance(doc.get("enum"), list) else []
        return out + [p for k, v in doc.items() for p in _enum_paths(v, (*path, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _enum_paths(v, (*path, i))]
    return []


def test_no_other_schema_enum_lists_methods_or_formats() -> None:
    """An enum that names a method or a format anywhere else must be added to the tests here."""
    checked = {*METHOD_ENUMS, VARIANT_ENUM, TRAINER_KEYS_ENUM, FORMAT_ENUM}
    ids = {*registries.method_ids(), *registries.format_ids()}
    for path in sorted(schemas_dir().glob("*.json")):
        schema = _schema(path.name)
        for p in _enum_paths(schema):
            values = _at(schema, *p)
            if set(values) & ids:
                assert (path.name, p) in checked, (path.name, p, values)


def test_the_training_config_format_enum_is_the_format_registry() -> None:
    assert _at(_schema(FORMAT_ENUM[0]), *FORMAT_ENUM[1]) == list(registries.format_ids())


def test_the_evidence_variant_enum_is_the_variant_registry(book: Rulebook) -> None:
    assert sorted(_at(_schema(VARIANT_ENUM[0]), *VARIANT_ENUM[1])) == sorted(book.variants)


def test_parameters_trainer_keys_are_the_formats_key_tables() -> None:
    names = _at(_schema(TRAINER_KEYS_ENUM[0]), *TRAINER_KEYS_ENUM[1])
    assert sorted(names) == sorted(f.trainer_keys for f in registries.formats().values() if f.trainer_keys)


def test_every_format_has_a_reader_and_one_is_the_fallback() -> None:
    assert list(READERS) == list(registries.format_ids())
    assert [f.id for f in registries.formats().values() if f.fallback] == ["trl"]


def test_every_method_fact_has_its_flag_and_is_a_task_fact() -> None:
    fields = set(TaskFacts.__dataclass_fields__)
    for m in registries.methods().values():
        assert set(m.facts) <= set(FACT_FLAGS) <= fields, m.id


def test_a_reference_off_setting_is_a_rulebook_parameter_and_drops_only_at_its_value(book: Rulebook) -> None:
    grpo = registries.method("grpo")
    assert grpo is not None and grpo.reference_off == ("beta", 0.0)
    assert not grpo.loads_reference({"beta": 0.0}) and not grpo.loads_reference({"beta": 0})
    assert grpo.loads_reference({"beta": 0.04}) and grpo.loads_reference({})  # not given: the method's flag
    dpo = registries.method("dpo")
    assert dpo is not None and dpo.reference_off is None and dpo.loads_reference({"beta": 0.0})
    for m in registries.methods().values():
        assert m.reference_off is None or m.reference_off[0] in book.parameters, m.id


def test_help_text_functions_list_the_registries_in_order() -> None:
    assert registries.method_ids() == ("sft", "dpo", "grpo", "ppo", "raft", "rm", "pt")
    assert registries.format_ids() == ("advisor", "axolotl", "llama-factory-v1", "llama-factory", "trl", "trainer-state")
    assert registries.optimizer_ids()[:2] == ("adamw_torch", "adamw_torch_fused")
    assert set(registries.probe_optimizer_ids()) < set(registries.optimizer_ids())
    assert registries.generating_method_ids() == ("grpo", "ppo")


def test_the_variant_help_lists_the_variant_registry_by_method(book: Rulebook) -> None:
    from advisor.commands.options import VARIANTS_HELP

    listed = {v: m.lower() for names, m in re.findall(r"([a-z_, ]+) \((\w+)\)", VARIANTS_HELP.split(":", 1)[1])
              for v in (n.strip() for n in names.split(","))}
    assert listed == {v: raw["method"] for v, raw in book.variants.items()
                      if v != raw["method"] and raw["method"] in ("dpo", "grpo", "ppo")}


def test_what_each_method_feeds_is_the_registrys() -> None:
    dpo, grpo, sft = (registries.method(m) for m in ("dpo", "grpo", "sft"))
    assert dpo is not None and (dpo.sequences_per_example, dpo.sequences, dpo.generates) == (2, "chosen + rejected", False)
    assert grpo is not None and grpo.generates and grpo.reference_model
    assert sft is not None and not sft.reference_model and sft.trl_trainer == "SFTTrainer"
    assert registries.method("orpo") is None and registries.method_aliases()["orpo"] == "dpo"
    assert TaskFacts(method="grpo", peft="lora").as_facts()["task.is_rl"] is True
    assert TaskFacts(method="raft", peft="lora").as_facts()["task.is_rl"] is False


def test_eight_bit_optimizers_are_the_ones_with_8bit_states() -> None:
    for o in registries.optimizers().values():
        assert o.eight_bit == (o.states == "adamw-8bit-state-bytes"), o.id


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        ({"advisor_format": 1, "anything": 2}, "advisor"),
        ({"training": {"learning_rate": 1e-4}, "model": "x"}, "advisor"),
        ({"training": {"learning_rate": 1e-4}, "stage": "sft"}, "llama-factory"),  # a key advisor's own lacks
        ({"log_history": [], "global_step": 3}, "trainer-state"),
        ({"base_model": "x", "micro_batch_size": 2}, "axolotl"),
        ({"stage": "dpo", "finetuning_type": "lora"}, "llama-factory"),
        ({"base_model": "x", "cutoff_len": 1024}, "axolotl"),  # a tie goes to the earlier entry
        ({"output_dir": "o", "cutoff_len": 1024}, "trl"),  # ...except the fallback, which wins ties
        # a key only LLaMA-Factory has (a mark) outweighs the TrainingArguments keys TRL's signature counts
        ({"model_name_or_path": "x", "per_device_train_batch_size": 1, "stage": "sft"}, "llama-factory"),
        ({"base_model": "x", "finetuning_type": "full"}, "llama-factory"),
        ({"something": 1}, "trl"),  # nothing recognised: the fallback
    ],
)
def test_detection_follows_the_registry(data: dict[str, Any], fmt: str) -> None:
    assert detect_format(data) == fmt


def _user_dir(tmp_path: Path, text: str, name: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / name).write_text(textwrap.dedent(text))
    return d


def test_a_user_directory_layers_optimizers_over_the_registry(tmp_path: Path, book: Rulebook) -> None:
    d = _user_dir(tmp_path, """
        optimizers:
          - {id: my_adamw_8bit, states: adamw-8bit-state-bytes, eight_bit: true, source: my notes}
          - {id: sgd, states: adamw-8bit-state-bytes, source: my notes, eight_bit: true}
        """, "opts.yaml")
    mine = Knowledge(load_rulebook([d]))
    assert mine.optimizer_states("my_adamw_8bit") == "adamw-8bit-state-bytes" and mine.eight_bit("my_adamw_8bit")
    assert mine.eight_bit("sgd") and not Knowledge(book).eight_bit("sgd")  # the same id replaces


def test_a_user_optimizer_naming_no_coefficient_is_an_error(tmp_path: Path) -> None:
    d = _user_dir(tmp_path, "optimizers:\n  - {id: mine, states: no-such-bytes, source: my notes}\n", "opts.yaml")
    with pytest.raises(RuleFileError, match=r"opts\.yaml: optimizer 'mine' key 'states': unknown coefficient "
                                            "'no-such-bytes'"):
        load_rulebook([d])  # at load, before the memory model runs


@pytest.mark.parametrize("kind", ["methods", "formats"])
def test_a_user_directory_cannot_add_a_method_or_format(tmp_path: Path, kind: str) -> None:
    raw = (Path(__file__).resolve().parents[1] / "rules" / "registry" / f"{kind}.yaml").read_text()
    d = _user_dir(tmp_path, raw, f"{kind}.yaml")
    with pytest.raises(RuleFileError, match=rf"{kind} is a built-in registry.*rules/registry/{kind}\.yaml"):
        load_rulebook([d])


def test_a_registry_entry_that_breaks_its_schema_names_the_file_and_key(tmp_path: Path) -> None:
    d = _user_dir(tmp_path, "optimizers:\n  - {id: mine, paged: sometimes, source: my notes}\n", "opts.yaml")
    with pytest.raises(RuleFileError, match=r"opts\.yaml: optimizer 'mine' key 'optimizers\[0\]\.paged': 'sometimes'"):
        load_rulebook([d])


def test_a_damaged_registry_cache_entry_is_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registries are cached as JSON by their bytes' hash (start-up imports no yaml); a damaged
    entry is read from the YAML again, never an error."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = registries.rules_dir() / registries.REGISTRY_DIR / "methods.yaml"
    first = registries._parse(path, path.read_bytes())
    entries = list((tmp_path / "advisor" / "registry").glob("methods-*.json"))
    assert len(entries) == 1
    entries[0].write_text("{not json")
    assert registries._parse(path, path.read_bytes()) == first


def test_a_writers_placeholder_without_the_placeholder_word_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate (VCF009) finds a placeholder by formats.yaml's `placeholder` word alone, so a format's
    `write.placeholders` value that does not hold it is refused at load, not written unseen."""
    import shutil

    shutil.copytree(registries.rules_dir() / registries.REGISTRY_DIR, tmp_path / registries.REGISTRY_DIR)
    path = tmp_path / registries.REGISTRY_DIR / "formats.yaml"
    path.write_text(path.read_text().replace("\nplaceholder: REPLACE_ME\n", "\nplaceholder: FILL_ME_IN\n"))
    monkeypatch.setattr(registries, "rules_dir", lambda: tmp_path)
    registries.formats.cache_clear()
    registries.placeholder.cache_clear()
    try:
        assert registries.placeholder() == "FILL_ME_IN"
        with pytest.raises(RuleFileError, match=r"formats\.yaml: format 'axolotl' key 'write\.placeholders' "
                                                r"\(datasets\).*does not hold the placeholder 'FILL_ME_IN'"):
            registries.formats()
    finally:
        registries.formats.cache_clear()
        registries.placeholder.cache_clear()
