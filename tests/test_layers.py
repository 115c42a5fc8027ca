"""The house's shape (../shared/DESIGN.md): imports run downward only, and every command speaks
the same output vocabulary."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from advisor.commands import COMMANDS
from advisor.render.emit import RENDERERS, TRAINER_WRITERS
from tests.conftest import run_cli

PACKAGE = Path(__file__).resolve().parent.parent / "advisor"

# Lowest first: a module may import its own layer and the layers below it, never one above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("leaf", ("advisor", "advisor.errors", "advisor.exitcodes", "advisor.provenance", "advisor.paths",
              "advisor.output", "advisor.suggest", "advisor.registries", "advisor.safeio")),
    ("facts", ("advisor.facts",)),
    ("rulebook", ("advisor.rulebook", "advisor.recommendation", "advisor.telemetry")),
    ("domain", ("advisor.memory", "advisor.configs", "advisor.schedule", "advisor.diagnose", "advisor.evidence")),
    ("app", ("advisor.probe", "advisor.sweep", "advisor.validate", "advisor.render", "advisor.api",
             "advisor.listings")),
    ("commands", ("advisor.commands", "advisor.cli", "advisor.__main__")),
)


def layer_of(module: str) -> int | None:
    """The layer of the longest prefix that names ``module``."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def runtime_imports(source: str) -> list[tuple[str, int]]:
    """Every advisor import that runs (function-level ones too); ``if TYPE_CHECKING:`` blocks do not."""
    found: list[tuple[str, int]] = []

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.extend((alias.name, node.lineno) for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.level == 0:
                found.append((node.module, node.lineno))
                found.extend((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)

    Visitor().visit(ast.parse(source))
    return [(name, line) for name, line in found if name == "advisor" or name.startswith("advisor.")]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def upward_imports(root: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        here = layer_of(module_name(path, root))
        for name, line in runtime_imports(path.read_text(encoding="utf-8")):
            there = layer_of(name)
            if here is not None and there is not None and there > here:
                out.append(f"{module_name(path, root)}:{line} imports {name} ({LAYERS[here][0]} -> {LAYERS[there][0]})")
    return out


def test_every_module_has_a_layer() -> None:
    unplaced = [module_name(p) for p in PACKAGE.rglob("*.py") if layer_of(module_name(p)) is None]
    assert unplaced == []


def test_imports_run_downward_only() -> None:
    assert upward_imports() == []


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a facts module importing the rulebook at run time is caught, the
    same import under TYPE_CHECKING is not."""
    facts = tmp_path / "advisor" / "facts"
    facts.mkdir(parents=True)
    (facts / "bad.py").write_text("def f():\n    from advisor.rulebook.load import Rulebook\n")
    (facts / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                    "    from advisor.rulebook.load import Rulebook\n")
    assert upward_imports(tmp_path / "advisor") == ["advisor.facts.bad:2 imports advisor.rulebook.load (facts -> rulebook)",
                     "advisor.facts.bad:2 imports advisor.rulebook.load.Rulebook (facts -> rulebook)"]


def test_every_commands_result_type_has_text_and_json_renderers() -> None:
    for name, module, _, _, _ in COMMANDS:
        mod = importlib.import_module(f"advisor.commands.{module}")
        results = [v for k, v in vars(mod).items() if isinstance(v, str) and v in RENDERERS]
        assert results, f"advisor.commands.{module} names no result type of emit's table"
        for result in results:
            assert {"text", "json"} <= set(RENDERERS[result]), (name, result)
    for formats in [*RENDERERS.values(), TRAINER_WRITERS]:
        for target in formats.values():
            module, _, function = target.partition(":")
            assert callable(getattr(importlib.import_module(module), function)), target


@pytest.mark.parametrize("command", [(g + " " if g else "") + n for n, _, _, _, g in COMMANDS])
def test_every_command_takes_format_json_and_output(command: str) -> None:
    help_text = run_cli(*command.split(), "--help").stdout
    assert "--format" in help_text and "json" in help_text, command
    assert "--output" in help_text and "-o" in help_text, command
