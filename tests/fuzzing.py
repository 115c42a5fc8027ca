"""The fuzz harness tests/test_fuzz.py and bench/fuzz.py share: Hypothesis strategies for every
reader's input, one entry point per reader, and the rule a call must keep.

The rule (issue 16): a call returns, or raises an AdvisorError whose message names its input,
within TIME_LIMIT_S. Anything else is an internal error (another exception) or a hang.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from advisor.errors import AdvisorError
from advisor.rulebook.load import Rulebook, load_rulebook

TIME_LIMIT_S = 10.0  # one call; the slowest legitimate one takes well under a second


class Hang(Exception):
    """A call that ran past TIME_LIMIT_S."""


@contextmanager
def time_limit(seconds: float = TIME_LIMIT_S) -> Iterator[None]:
    """Raise Hang in the calling (main) thread after ``seconds``."""
    def _alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    kind: str  # ok | error (an AdvisorError naming its input) | unnamed (one that does not) | internal | hang
    detail: str = ""


def classify(call: Callable[[], Any], names: str) -> Outcome:
    """Run ``call`` under the time limit; ``names`` is what an error message must contain."""
    start = time.monotonic()
    try:
        with time_limit():
            call()
    except Hang as exc:
        return Outcome("hang", str(exc))
    except AdvisorError as exc:
        text = str(exc)
        if names not in text:
            return Outcome("unnamed", text[:300])
        if len(text) > 1000:
            return Outcome("unnamed", f"{len(text)} characters: {text[:200]}")
        return Outcome("error", text)
    except Exception as exc:  # the point: anything else is an internal error
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" at {Path(frame.filename).name}:{frame.lineno}"
        return Outcome("internal", f"{type(exc).__name__}: {str(exc)[:300]}{where}")
    if time.monotonic() - start > TIME_LIMIT_S:
        return Outcome("hang", "returned after the limit")
    return Outcome("ok")


@cache
def book() -> Rulebook:
    return load_rulebook()


# --- strategies ---------------------------------------------------------------------------

HUGE = st.sampled_from([10**400, -(10**400), 10**30, 2**64, 1e308, 1e-320])
NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), HUGE)
WORDS = st.sampled_from(["auto", "true", "false", "yes", "none", "null", "", "lora", "qlora", "full", "sft", "dpo",
                         "grpo", "cosine", "adamw_torch", "all-linear", "5e-5", "1e999", "nan", "-1", "0x10",
                         "llama-8b", "meta-llama/Llama-3.1-8B", "a" * 300, "x" * 5000])
TEXT = st.text(max_size=40)
SCALARS = st.one_of(NUMBERS, st.booleans(), st.none(), WORDS, TEXT)


def values(depth: int = 3) -> st.SearchStrategy[Any]:
    return st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.one_of(WORDS, TEXT), inner, max_size=4)),
                        max_leaves=depth * 4)


@cache
def known_keys() -> tuple[str, ...]:
    """Every key some reader looks at: parameter names and trainer spellings, format signatures."""
    from advisor.registries import formats

    keys: set[str] = {"model", "method", "peft", "training", "advisor_format", "rl", "stage", "finetuning_type",
                      "quantization_bit", "pref_loss", "loss_type", "use_peft", "load_in_4bit", "log_history",
                      "global_step", "use_vllm", "beta", "num_generations", "base_model", "model_name_or_path"}
    for param in book().parameters.values():
        keys.add(param.name)
        for spelled in param.trainer_keys.values():
            keys.update([spelled] if isinstance(spelled, str) else spelled)
    for fmt in formats().values():
        keys.update(fmt.signature)
    return tuple(sorted(keys))


def configs() -> st.SearchStrategy[dict[str, Any]]:
    """A config mapping: known keys (and the advisor format's training block) with any values."""
    key = st.one_of(st.sampled_from(known_keys()), TEXT)
    flat = st.dictionaries(key, values(), max_size=12)
    training = st.dictionaries(st.sampled_from(tuple(book().parameters)), values(2), max_size=8)
    advisor = st.fixed_dictionaries({"training": training},
                                    optional={"model": values(1), "method": values(1), "peft": values(1),
                                              "advisor_format": values(1)})
    state = st.fixed_dictionaries({"global_step": values(1), "log_history": st.lists(
        st.dictionaries(st.sampled_from(["learning_rate", "loss", "step", "grad_norm", "eval_loss"]), values(1),
                        max_size=5), max_size=6)})
    return st.one_of(flat, advisor, state)


# Hand-written YAML that a generated mapping cannot express: tags, aliases, anchors, odd syntax.
YAML_SNIPPETS = st.sampled_from([
    "learning_rate: !!bool maybe\n", "learning_rate: !!float x\n", "lora_r: !!int x\n", "? !!set {a}\n: 1\n",
    "a: &a [*a]\n", "a: !!binary xx\n", "t: !!timestamp 2020-13-45\n", "m: !!python/name:os.system\n",
    "learning_rate: 1e999\n", "learning_rate: " + "9" * 5000 + "\n", "[" * 200 + "]" * 200, "- " * 300 + "x\n",
    "a: &a [1]\nb: [*a, *a]\n", "x: {a: 1, a: 1}\n", "x: 1\nx: 2\n", "\ufeffmodel: llama-8b\n", "key: 'unclosed\n",
    "{\"learning_rate\": NaN}", "{\"learning_rate\": Infinity}", "%YAML 1.1\n---\na: 1\n", "--- a\n--- b\n",
    "a: *undefined\n", "\t- x\n", "<<: [*a]\n", "a: &a {b: 1}\n<<: *a\n", "<<: 1\n",
])


def config_texts() -> st.SearchStrategy[str]:
    def as_yaml(data: dict[str, Any]) -> str:
        return yaml.safe_dump(data, allow_unicode=True)

    def as_json(data: dict[str, Any]) -> str:
        return json.dumps(data)  # NaN / Infinity as JSON writes them

    dumped = configs().flatmap(lambda d: st.sampled_from([as_yaml(d), as_json(d)]))
    return st.one_of(dumped, YAML_SNIPPETS, st.tuples(dumped, YAML_SNIPPETS).map("".join), st.text(max_size=200))


FORMULA_ATOMS = st.one_of(
    st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["10**64", "'a'", "[1]", "[1, 2, 3]", "True", "None", "value", "model.hidden_size",
                     "task.dataset_size", "params.lora_rank", "log.loss", "coef.x", "1e308", "10**9", "''", "-1", "0"]),
)
FORMULA_OPS = ["+", "-", "*", "/", "//", "%", "**", "<", "==", "in", "and", "or"]
FUNCTIONS = ["min", "max", "abs", "round", "int", "float", "len", "ceil", "floor", "sqrt", "log2", "clamp",
             "pow2_floor", "pow2_ceil", "largest_divisor", "gcd", "sig", "geometric", "scale", "pad_to", "nth", "pick", "mean",
             "median", "head",
             "tail", "rel_change", "spikes", "zigzag", "slope", "drops", "longest_flat", "nonfinite", "finite_count", "subset",
             "difference", "given", "frac_at_least", "where_at_least"]


def formulas() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(inner, st.sampled_from(FORMULA_OPS), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
        call = st.tuples(st.sampled_from(FUNCTIONS), st.lists(inner, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})")
        ternary = st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})")
        unary = inner.map(lambda x: f"-{x}")
        return st.one_of(binary, call, ternary, unary, inner.map(lambda x: f"[{x}]"))

    grammar = st.recursive(FORMULA_ATOMS, extend, max_leaves=12)
    adversarial = st.sampled_from(["(((10**64)**64)**64)**64", "'a' * 10**9", "[1] * 10**8", "1+" * 50_000 + "1",
                                   "(" * 300 + "1" + ")" * 300, "-" * 3000 + "1", "'%0999999d' % 1", "__import__('os')",
                                   "().__class__", "lambda: 1", "[x for x in [1]]", "2**64**64", "10**10**10",
                                   "difference(geometric(1, 2, 4096), geometric(1, 2, 4096))"])
    return st.one_of(grammar, adversarial, st.text(max_size=60))


FACT_VALUES = st.one_of(NUMBERS, st.lists(NUMBERS, max_size=30), WORDS, st.booleans())


# --- entry points -------------------------------------------------------------------------
# Each takes the drawn input and a scratch directory and returns (call, what an error must name).

def config_entry(fmt: str) -> Callable[[str, Path], tuple[Callable[[], Any], str]]:
    def entry(text: str, tmp: Path) -> tuple[Callable[[], Any], str]:
        from advisor.facts.hardware import resolve_gpu
        from advisor.validate import Overrides, Selection, validate_file

        path = tmp / f"config-{fmt}.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        gpu = resolve_gpu(book(), name="h100", memory_gb=None, count=None, detect=False)

        def call() -> None:
            report = validate_file(path, book(), gpu, Overrides(config_format=fmt), Selection())
            if report.error is not None:
                raise AdvisorError(report.error)  # counted as an error; unnamed unless it names the file
        return call, str(path)
    return entry


def formula_entry(data: tuple[str, dict[str, Any]], tmp: Path) -> tuple[Callable[[], Any], str]:
    from advisor.rulebook import formula as fml

    text, facts = data

    def lookup(name: str) -> Any:
        if name in facts:
            return facts[name]
        raise fml.MissingFact(name)

    def call() -> None:
        with contextlib.suppress(fml.MissingFact):  # an unknown fact: the engine's normal path
            fml.parse(text).evaluate(lookup)
    return call, "formula"


def set_entry(items: list[str], tmp: Path) -> tuple[Callable[[], Any], str]:
    from advisor.commands.options import parse_set

    return (lambda: parse_set(items, book())), "--set"


MODEL_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
              "intermediate_size", "vocab_size", "max_position_embeddings", "num_local_experts", "num_experts",
              "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size", "model_type",
              "tie_word_embeddings", "text_config", "attention_bias", "mlp_bias", "qkv_bias")
DIMENSIONS = st.one_of(st.integers(1, 8192), NUMBERS, st.lists(st.integers(0, 16), max_size=2), WORDS, st.none())
BASE_MODEL = {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 512}


def model_configs() -> st.SearchStrategy[dict[str, Any]]:
    changes = st.dictionaries(st.sampled_from(MODEL_KEYS), DIMENSIONS, max_size=5)
    return changes.map(lambda c: {**BASE_MODEL, **c})


def model_entry(cfg: dict[str, Any], tmp: Path) -> tuple[Callable[[], Any], str]:
    from advisor.facts.model import resolve_model

    path = tmp / "config.json"
    path.write_text(json.dumps(cfg))  # NaN / Infinity as Python's json writes them
    return (lambda: resolve_model(str(path), book()).as_facts()), str(path)


LOG_KEYS = ("step", "global_step", "loss", "grad_norm", "learning_rate", "lr", "eval_loss", "verification_rate")


def log_rows() -> st.SearchStrategy[list[dict[str, Any]]]:
    value = st.one_of(st.floats(), st.integers(), HUGE, WORDS, st.none(), st.lists(st.integers(), max_size=2))
    return st.lists(st.dictionaries(st.sampled_from(LOG_KEYS), value, max_size=6), max_size=40)


def log_texts() -> st.SearchStrategy[tuple[str, str]]:
    """(suffix, text): a JSONL, CSV or trainer_state.json log, or bytes of noise under one of those names."""
    def jsonl(rows: list[dict[str, Any]]) -> str:
        return "".join(json.dumps(r) + "\n" for r in rows)

    def csv_text(rows: list[dict[str, Any]]) -> str:
        head = list(LOG_KEYS[:5])
        return ",".join(head) + "\n" + "".join(",".join(str(r.get(k, "")) for k in head) + "\n" for r in rows)

    def state(rows: list[dict[str, Any]]) -> str:
        return json.dumps({"global_step": len(rows), "log_history": rows})

    rows = log_rows()
    return st.one_of(rows.map(lambda r: (".jsonl", jsonl(r))), rows.map(lambda r: (".csv", "\ufeff" + csv_text(r))),
                     rows.map(lambda r: (".csv", csv_text(r))), rows.map(lambda r: (".json", state(r))),
                     st.tuples(st.sampled_from([".jsonl", ".csv", ".json"]), st.text(max_size=300)),
                     st.just((".jsonl", "[" * 100_000 + "]" * 100_000)), st.just((".csv", "step,loss\n" + "x" * 200_000)))


def log_entry(data: tuple[str, str], tmp: Path) -> tuple[Callable[[], Any], str]:
    from advisor.diagnose import diagnose
    from advisor.telemetry import read_log

    suffix, text = data
    path = tmp / f"log{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return (lambda: diagnose(book(), read_log(path))), str(path)


FORMATS = ("advisor", "axolotl", "llama-factory", "trl", "trainer-state")
# name -> (strategy, entry point)
ENTRY_POINTS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any, Path], tuple[Callable[[], Any], str]]]] = {
    **{f"config:{fmt}": (config_texts(), config_entry(fmt)) for fmt in FORMATS},
    "formula": (st.tuples(formulas(), st.dictionaries(st.sampled_from(["value", "model.hidden_size", "task.dataset_size",
                                                                        "params.lora_rank", "log.loss", "coef.x"]),
                                                       FACT_VALUES)), formula_entry),
    "--set": (st.lists(st.one_of(
        st.tuples(st.sampled_from(["lora_rank", "learning_rate", "micro_batch_size", "lora_target_modules", "bf16",
                                   "optimizer", "nope", ""]), st.one_of(WORDS, TEXT, YAML_SNIPPETS,
                                                                        NUMBERS.map(str))).map("=".join),
        TEXT), max_size=3), set_entry),
    "model config.json": (model_configs(), model_entry),
    "log": (log_texts(), log_entry),
}


