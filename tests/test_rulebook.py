from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from advisor import api
from advisor.errors import RuleFileError
from advisor.paths import rules_dir
from advisor.rulebook.load import Rulebook, find_conflicts, find_cycles, load_rulebook, read_yaml

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

GOOD_RULE = """
family: mine
description: my rules
rules:
  - id: my-lr
    code: MY001
    kind: recommend
    parameter: learning_rate
    summary: my learning rate
    source: {doc: my notes}
    confidence: low
    when: {fact: task.method, op: eq, value: sft}
    default: 1.0e-4
"""

SIGNAL_RULE = """
family: mine
description: my signs
rules:
  - id: my-sign
    code: MY002
    kind: signal
    parameter: learning_rate
    severity: warning
    summary: my sign
    sign: the loss rises
    advice: lower the LR
    direction: lr-too-high
    source: {doc: my notes}
    needs: [{series: loss, min: 10}]
    detect: "rel_change(log.loss, 0.1) < 0"
"""


def write(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / name).write_text(textwrap.dedent(text))
    return d


def test_shipped_rulebook_has_no_conflicts_or_cycles(book: Rulebook) -> None:
    assert find_conflicts(book) == []
    assert find_cycles(book) == []
    assert len(book.rules) >= 50


def test_every_rule_and_row_has_a_source_and_confidence(book: Rulebook) -> None:
    for rule in book.rules.values():
        assert rule.sources, rule.id
        for case in rule.cases:
            assert case.confidence in ("high", "medium", "low", "theoretical"), (rule.id, case.label)
            assert case.sources, (rule.id, case.label)


def test_every_cited_seed_exists(book: Rulebook) -> None:
    cited = {s["seed"] for r in book.rules.values() for c in r.cases for s in (*r.sources, *c.sources) if "seed" in s}
    assert cited == {"000_2a462e3d87faacd7.txt", "001_f92f4afbfe16a45e.txt", "004_5aa35488f0734f48.txt"}
    if SEEDS.is_dir():  # the seeds live beside the repository, in shared/
        for name in cited:
            assert (SEEDS / name).is_file(), name


def test_no_hyperparameter_number_lives_in_python() -> None:
    """Standard 2: knowledge numbers (learning rates, ratios, betas) live in rules/, not in code.

    Every fractional number literal in advisor/ is flagged unless its line says why it is
    structural (`not-knowledge`). Strings (help texts, examples) and comments are not code.
    """
    import ast
    import io
    import tokenize

    advisor_dir = Path(__file__).resolve().parents[1] / "advisor"
    offenders = []
    for path in sorted(advisor_dir.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type != tokenize.NUMBER:
                continue
            # literal_eval reads every literal form (0o666, 0x1F, 1_000, 2e-4); imaginary ones are never knowledge
            value = float(ast.literal_eval(tok.string)) if not tok.string.endswith(("j", "J")) else 1.0
            if 0 < value < 1 and "not-knowledge" not in lines[tok.start[0] - 1]:
                offenders.append(f"{path.name}:{tok.start[0]}: {lines[tok.start[0] - 1].strip()}")
    assert offenders == []


def registry_vocabulary() -> set[str]:
    """The ids the registries own: methods (and the loss names they alias), optimizers, trainer formats,
    method variants. A table of them in code restates a registry."""
    from advisor import registries
    from advisor.rulebook.load import read_yaml

    variants = {v["id"] for v in read_yaml(rules_dir() / "variants.yaml")["variants"]}
    return {*registries.method_ids(), *registries.method_aliases(), *registries.optimizer_ids(),
            *registries.format_ids(), *variants}


def string_tables(source: str, vocabulary: set[str]) -> list[int]:
    """Lines that restate a registry: a tuple / list / set literal, or a dict's keys or values, holding two
    or more string constants from ``vocabulary``; or an == / != against one (`method == "dpo"`: what DPO
    feeds is the registry's flag). A literal whose lines (or a comment line just above) say
    `not-knowledge` is allowed."""
    import ast

    def known(e: ast.expr) -> bool:
        return isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in vocabulary

    lines = source.splitlines()
    found: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            hit = sum(map(known, node.elts)) >= 2
        elif isinstance(node, ast.Dict):
            hit = sum(known(k) for k in node.keys if k is not None) >= 2 or sum(map(known, node.values)) >= 2
        elif isinstance(node, ast.Compare):
            hit = any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops) and any(
                map(known, [node.left, *node.comparators]))
        else:
            continue
        span = lines[node.lineno - 1:node.end_lineno or node.lineno]
        above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
        if hit and not any("not-knowledge" in ln for ln in span) and not (above.startswith("#") and "not-knowledge" in above):
            found.append(node.lineno)
    return found


@pytest.mark.parametrize(
    ("snippet", "flagged"),
    [
        ('_GEN_METHODS = ("grpo", "ppo")', True),  # the memory model's list before the registry
        ('if method in ["dpo", "ipo"]:\n    pass', True),
        ('PAIR = {"orpo": "dpo", "simpo": "dpo"}', True),  # keys are ids
        ('READERS = {"axolotl": read_a, "trl": read_t}', True),
        ('OPT = {"a": "adamw_torch", "b": "paged_adamw_8bit"}', True),  # values are ids
        ('x = ("grpo", "ppo")  # not-knowledge: a test of two methods', False),
        ('# not-knowledge: the example the help shows\nx = ("sft", "dpo")', False),
        ('sequences = 2 if method == "dpo" else 1', True),  # what DPO feeds is the registry's flag
        ('if fmt != "llama-factory":\n    pass', True),
        ('default = "sft"', False),  # one id is a default, not a table
        ('KINDS = ("text", "json", "yaml")', False),
        ('pair = ("grpo", 3)', False),
    ],
)
def test_string_table_check_catches_restated_registries(snippet: str, flagged: bool) -> None:
    assert bool(string_tables(snippet, registry_vocabulary())) is flagged


def test_no_method_optimizer_or_format_table_lives_in_python() -> None:
    """Standard 2 for names: which methods generate, which optimizers exist, which formats are read live
    in the registries (rules/registry/); code asks them (advisor.registries) rather than listing ids."""
    vocabulary = registry_vocabulary()
    advisor_dir = Path(__file__).resolve().parents[1] / "advisor"
    offenders = []
    for path in sorted(advisor_dir.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        offenders += [f"{path.relative_to(advisor_dir)}:{n}: {lines[n - 1].strip()}"
                      for n in string_tables(source, vocabulary)]
    assert offenders == []


def test_user_rules_layer_over_builtin(tmp_path: Path) -> None:
    d = write(tmp_path, GOOD_RULE.replace("id: my-lr", "id: lr-base").replace("MY001", "LR001")
              .replace("default: 1.0e-4", "default: 3.0e-5"))
    book = load_rulebook([d])
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="full", detect_gpu=False)
    base = rec.parameters["learning_rate"].trace[0]  # the evidence rule (LR008) refines it afterwards
    assert (base.rule, base.after) == ("lr-base", 3.0e-5)
    assert book.rules["lr-base"].file.parent == d


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            GOOD_RULE.replace("confidence: low", "confidence: sure"),
            r"mine\.yaml: rule 'my-lr' key 'rules\[0\]\.confidence': 'sure' is not one of",
        ),
        (
            GOOD_RULE.replace("    default: 1.0e-4", "    default: 1.0e-4\n    bogus: 3"),
            r"mine\.yaml: rule 'my-lr' key 'rules\[0\]'.*'bogus' was unexpected",
        ),
        (
            GOOD_RULE.replace("parameter: learning_rate", "parameter: learning_rat"),
            r"mine\.yaml: rule 'my-lr' key 'parameter': unknown parameter 'learning_rat'",
        ),
        (
            GOOD_RULE.replace("fact: task.method", "fact: task.methd"),
            r"mine\.yaml: rule 'my-lr' key 'when/formula': unknown fact 'task\.methd'",
        ),
        (
            GOOD_RULE.replace("default: 1.0e-4", "formula: \"__import__('os')\""),
            r"mine\.yaml: rule 'my-lr' key 'formula': formula .* only these functions may be called",
        ),
        (GOOD_RULE.replace("code: MY001", "code: LR001"), r"rule 'my-lr' key 'code': LR001 is already used by rule 'lr-base'"),
        (
            GOOD_RULE.replace("    default: 1.0e-4", "    default: 1.0e-4\n    overrides: [no-such-rule]"),
            r"rule 'my-lr' key 'overrides': no rule 'no-such-rule'",
        ),
        (
            GOOD_RULE.replace("    source: {doc: my notes}\n", ""),
            r"mine\.yaml: rule 'my-lr' key 'rules\[0\]': 'source' is a required property",
        ),
        (
            GOOD_RULE.replace("kind: recommend", "kind: adjust"),
            r"mine\.yaml: rule 'my-lr' key '\(rule\)': adjust rules need one of factor",
        ),
        (
            "family: mine\ndescription: x\nrules:\n  - id: a\n    id: b\n",
            r"mine\.yaml: line 5: not valid YAML: duplicate key 'id'",
        ),
        ("family: mine\n  description: [\n", r"mine\.yaml: line \d+: not valid YAML"),
        (
            SIGNAL_RULE.replace("series: loss", "series: eval_loss"),
            r"mine\.yaml: rule 'my-sign' key 'needs\[0\]\.series': 'eval_loss' is not a series the detect formula reads",
        ),
        (
            SIGNAL_RULE.replace("min: 10", "min: 0"),
            r"mine\.yaml: rule 'my-sign' key 'rules\[0\]\.needs\[0\]\.min': 0 is less than the minimum of 1",
        ),
        (
            GOOD_RULE.replace("    default: 1.0e-4", "    default: 1.0e-4\n    needs: [{series: loss, min: 3}]"),
            r"mine\.yaml: rule 'my-lr' key 'rules\[0\]'",
        ),
        ("just a string\n", r"mine\.yaml: expected a mapping"),
        ("", r"mine\.yaml: expected a mapping"),
    ],
)
def test_bad_rule_files_name_file_rule_and_key(tmp_path: Path, text: str, pattern: str) -> None:
    d = write(tmp_path, text)
    with pytest.raises(RuleFileError) as err:
        load_rulebook([d])
    message = str(err.value)
    assert "\n" not in message
    assert re.search(pattern, message), message


# A user rule that refines one parameter: each case below changes one thing in it, and each was once
# passed by the load (and `advisor rules check`) to fail, or mislead, only when a command ran it.
RANK_RULE = """
family: mine
description: my rank
rules:
  - id: my-rank
    code: MY010
    kind: recommend
    stage: refine
    parameter: lora_rank
    summary: my rank
    source: {doc: my notes}
    confidence: low
    default: 12
"""


def _rank(line: str) -> str:
    replaces = line.startswith(("    default", "    formula", "    cases"))
    return RANK_RULE.replace("    default: 12\n", line if replaces else f"    default: 12\n{line}")


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("    when: {fact: model.active_params_b, op: between, value: [10]}\n",
         r"key 'when': model\.active_params_b between \[10\]: between takes a list of two numbers"),
        ("    when: {fact: model.active_params_b, op: between, value: [10, 20, 30]}\n",
         r"key 'when': model\.active_params_b between \[10, 20, 30\]: between takes a list of two numbers"),
        ("    when: {fact: model.active_params_b, op: between, value: 10}\n",
         r"key 'when': model\.active_params_b between 10: between takes a list of two numbers"),
        ("    when: {fact: model.active_params_b, op: between, value: [a, b]}\n",
         r"key 'when': model\.active_params_b between \['a', 'b'\]: between takes a list of two numbers"),
        ("    when: {fact: model.active_params_b, op: between, value: [20, 10]}\n",
         r"key 'when': model\.active_params_b between \[20, 10\]: lo 20 is not below hi 10, so it never matches"),
        ("    when: {fact: model.active_params_b, op: lt, value: abc}\n",
         r"key 'when': model\.active_params_b lt 'abc': lt compares numbers"),
        ("    when: {fact: model.active_params_b, op: in, value: 5}\n",
         r"key 'when': model\.active_params_b in 5: in takes a list of values"),
        ("    when: {fact: task.method, op: lt, value: 5}\n",
         r"key 'when': task\.method lt 5: task\.method is a word, and lt compares numbers"),
        ("    when: {all: [{fact: task.adapter, op: eq, value: true}, {fact: task.method, op: eq, value: 5}]}\n",
         r"key 'when': task\.method eq 5: task\.method is a word, so 5 never matches"),
        ("    when: {fact: params.lora_alpha, op: eq, value: high}\n",
         r"key 'when': params\.lora_alpha eq 'high': params\.lora_alpha is a number, so 'high' never matches"),
        ("    default: -12\n", r"key 'default': -12 is below the smallest meaningful value 1 \(parameter 'lora_rank'\)"),
        ("    default: banana\n", r"key 'default': value 'banana' is not an int \(parameter 'lora_rank'\)"),
        ("    default: .nan\n", r"key 'default': value nan is not an int \(parameter 'lora_rank'\)"),
        ("    range: [100, 1]\n", r"key 'range': \[100, 1\] runs from high to low"),
        ("    default: 12\n    range: [0, 16]\n", r"key 'range\[0\]': 0 is below the smallest meaningful value 1"),
        ("    default: 12\n    choices: [8, 16, -4]\n", r"key 'choices\[2\]': -4 is below the smallest meaningful value 1"),
        ("    cases:\n      - {label: a, when: {fact: model.params_b, op: lt, value: 5}, default: 0}\n",
         r"key 'cases\[0\]\.default': 0 is below the smallest meaningful value 1"),
        ("    formula: '1/0'\n", r"key 'formula': formula '1/0': 1/0 cannot be computed: 'division by zero'"),
        ("    formula: 'sqrt(-1)'\n", r"key 'formula': formula 'sqrt\(-1\)': sqrt\(-1\) cannot be computed"),
        ("    formula: '1e308 * 10'\n", r"key 'formula': formula '1e308 \* 10': 1e308 \* 10 is inf, not a finite number"),
        ("    formula: '-12'\n", r"key 'formula': -12 is below the smallest meaningful value 1"),
        ("    formula: 'model.hidden_size ** 1000'\n",
         r"key 'formula': formula 'model\.hidden_size \*\* 1000': exponent 1000 is larger than 64"),
        ("    formula: 'model.hidden_size / (2 - 2)'\n",
         r"key 'formula': formula 'model\.hidden_size / \(2 - 2\)': divides by 0"),
    ],
)
def test_rules_that_would_fail_when_run_are_refused_at_load(tmp_path: Path, line: str, pattern: str) -> None:
    with pytest.raises(RuleFileError) as err:
        load_rulebook([write(tmp_path, _rank(line))])
    message = str(err.value)
    assert "\n" not in message and "(hint: " in message
    assert re.search(r"mine\.yaml: rule 'my-rank' " + pattern, message), message


def test_the_rank_rule_itself_loads_and_refines(tmp_path: Path) -> None:
    book = load_rulebook([write(tmp_path, _rank("    when: {fact: model.active_params_b, op: between, value: [5, 10.5]}\n"))])
    rec = api.recommend(book=book, model="llama-8b", method="sft", detect_gpu=False)
    assert rec.parameters["lora_rank"].value == 12


def test_conflicting_rules_are_found_at_load(tmp_path: Path) -> None:
    # Same parameter, same stage, overlapping conditions (SFT + LoRA is both "sft" and "adapter").
    overlap = GOOD_RULE.replace(
        "when: {fact: task.method, op: eq, value: sft}",
        "when: {all: [{fact: task.adapter, op: eq, value: true}, {fact: task.method, op: eq, value: dpo}]}",
    )
    d = write(tmp_path, overlap)
    with pytest.raises(RuleFileError, match=r"conflicts with rule 'lr-base'.*'learning_rate' in stage 'base'"):
        load_rulebook([d])
    # Declaring precedence resolves it.
    write(tmp_path, overlap.replace("    default: 1.0e-4", "    default: 1.0e-4\n    overrides: [lr-base]"))
    book = load_rulebook([d])
    rec = api.recommend(book=book, model="llama-8b", method="dpo", detect_gpu=False)
    assert rec.parameters["learning_rate"].trace[0].rule == "my-lr"  # the base stage's winner (LR008 refines it)


def test_rule_cycles_are_found_at_load(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        """
        family: loop
        description: two parameters defined by each other
        rules:
          - id: loop-a
            code: LOOP001
            kind: derive
            parameter: weight_decay
            summary: a
            source: {doc: x}
            confidence: low
            formula: params.adam_epsilon * 2
          - id: loop-b
            code: LOOP002
            kind: derive
            parameter: adam_epsilon
            summary: b
            source: {doc: x}
            confidence: low
            formula: params.weight_decay / 2
    """,
    )
    with pytest.raises(RuleFileError, match="loop: (adam_epsilon -> weight_decay|weight_decay -> adam_epsilon)"):
        load_rulebook([d])


def test_shipped_files_parse_strictly() -> None:
    for path in sorted(rules_dir().glob("*.yaml")):
        assert isinstance(read_yaml(path), dict), path


def test_missing_rules_directory(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="no such directory"):
        load_rulebook([tmp_path / "nope"])
    f = tmp_path / "file.yaml"
    f.write_text(GOOD_RULE)
    with pytest.raises(RuleFileError, match="not a directory"):
        load_rulebook([f])


def test_schema_validation_is_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that passed its schema is not validated again; an edited one is (a new hash)."""
    import advisor.rulebook.load as load

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ADVISOR_NO_CACHE", raising=False)
    mine = GOOD_RULE.replace("id: my-lr", "id: lr-base").replace("MY001", "LR001")  # layers over the built-in rule
    d = write(tmp_path, mine)
    load_rulebook([d])
    markers = list((tmp_path / "cache" / "advisor" / "validated").iterdir())
    assert len(markers) >= 2 and all(m.stat().st_size == 0 for m in markers)  # built-in files and mine
    calls: list[str] = []
    real = load._validator
    monkeypatch.setattr(load, "_validator", lambda name: calls.append(name) or real(name))
    load_rulebook([d])
    assert calls == []  # every file cached
    write(tmp_path, mine.replace("confidence: low", "confidence: sure"))
    with pytest.raises(RuleFileError, match="'sure' is not one of"):
        load_rulebook([d])
    assert calls == ["rules.schema.json"]  # only the edited file
    monkeypatch.setenv("ADVISOR_NO_CACHE", "1")
    write(tmp_path, mine)
    calls.clear()
    load_rulebook([d])
    assert len(calls) > 2  # every file validated


def test_an_unwritable_cache_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.delenv("ADVISOR_NO_CACHE", raising=False)
    assert load_rulebook().rules
