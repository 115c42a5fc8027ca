"""The README's example outputs are what the commands print today.

Each ```console block that starts with ``$ advisor ...`` is run (at the 200 columns the
examples were taken at) and its output compared line by line, trailing spaces aside. A line
that is only ``...`` stands for any number of lines; ``...`` inside a line for any text (the
README abridges long outputs that way). Blocks whose output depends on the machine (the probe
and sweep train and print timings) or on files a reader brings (``raft/``) are listed in
UNCHECKED with the reason; their behaviour is asserted in their own tests.
"""

from __future__ import annotations

import glob
import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

BLOCKS = re.findall(r"^```console\n\$ (advisor [^\n]*)\n(.*?)^```$", (REPO / "README.md").read_text(), re.M | re.S)
UNCHECKED = {
    "probe": "trains a model: step times and tokens/s differ per machine (tests/test_probe.py)",
    "sweep": "trains models: timings differ per machine (tests/test_sweep.py)",
    "diagnose": "reads a reader's raft/ directory of logs (tests/test_diagnose.py)",
}
CHECKED = [(cmd, out) for cmd, out in BLOCKS if cmd.split()[1] not in UNCHECKED]


def _pattern(expected: str) -> re.Pattern[str]:
    parts = []
    for line in expected.splitlines():
        line = line.rstrip()
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split("...")) + r"\n")
    return re.compile("".join(parts))


def _run(command: str) -> str:
    """Run ``advisor ...`` with an optional ``| head -N``, as a shell would."""
    pipeline = command.split(" | ")
    args = [a for word in shlex.split(pipeline[0])[1:]
            for a in (sorted(glob.glob(word, root_dir=REPO)) if "*" in word else [word])]
    # No nvidia-smi on PATH: the examples were taken on a machine without a GPU to detect.
    proc = run_cli(*args, env={"PATH": str(Path(sys.executable).parent)})
    assert not proc.stderr.strip() or proc.returncode in (0, 1), proc.stderr
    lines = [line.rstrip() for line in proc.stdout.splitlines()]
    for stage in pipeline[1:]:
        match = re.fullmatch(r"head -(\d+)", stage.strip())
        assert match is not None, f"the README pipes into {stage!r}: teach this test what it does"
        lines = lines[: int(match.group(1))]
    return "".join(line + "\n" for line in lines)


def test_the_readme_has_console_examples_for_every_command() -> None:
    commands = {cmd.split()[1] for cmd, _ in BLOCKS}
    assert {"recommend", "memory", "validate", "schedule", "diagnose", "probe", "rules", "models", "gpus",
            "sweep"} <= commands


@pytest.mark.parametrize(("command", "expected"), CHECKED, ids=[c for c, _ in CHECKED])
def test_readme_example_is_current(command: str, expected: str) -> None:
    got = _run(command)
    if _pattern(expected).fullmatch(got) is None:
        pytest.fail(f"README example for `{command}` no longer matches its output; it prints:\n{got}")


def test_an_abridged_line_still_has_to_match() -> None:
    """The matcher is not so loose that anything passes."""
    assert _pattern("a ... z\n...\nend\n").fullmatch("a b c z\nx\ny\nend\n")
    assert _pattern("a ... z\nend\n").fullmatch("a b c y\nend\n") is None
    assert _pattern("a\nend\n").fullmatch("a\nextra\nend\n") is None


def test_the_validate_code_table_lists_every_check_with_its_severity() -> None:
    """Each check's row, as `advisor rules show CODE` would summarise it: code, severity and summary."""
    from advisor.rulebook.load import load_rulebook

    rows = {code: (severity, summary) for code, severity, summary in
            re.findall(r"^\| `(V[A-Z]+\d+)` \| (\w+) \| (.*) \|$", (REPO / "README.md").read_text(), re.M)}
    checks = {r.code: (r.severity, r.summary) for r in load_rulebook().rules.values()
              if r.kind == "check" and r.code.startswith("V")}
    assert rows == checks
