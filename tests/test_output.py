"""Outputs are written atomically and as readable as any file the user writes."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from advisor.output import fmt_count, write_atomic
from tests.conftest import run_cli


def test_write_atomic_leaves_one_file_with_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / "report.json"
        write_atomic(target, "{}\n")
        write_atomic(target, '{"a": 1}\n')  # replacing keeps the mode too
    finally:
        os.umask(old)
    assert target.read_text() == '{"a": 1}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left behind


def test_rewriting_a_private_file_keeps_it_private(tmp_path: Path) -> None:
    """A replaced file keeps its own mode: -o over a 0600 file must not leave it world-readable."""
    target = tmp_path / "secret.yaml"
    target.write_text("old\n")
    target.chmod(0o600)
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("command", [("probe", "--model", "llama-3.2-1b", "--method", "sft"),
                                     ("sweep", "--model", "llama-3.2-1b", "--method", "sft")])
def test_an_output_directory_that_is_a_file_or_device_is_refused_before_any_work(tmp_path: Path,
                                                                                command: tuple[str, ...]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    for out, kind in ((afile, "is a file, not a directory"), (Path("/dev/null"), "is a character device")):
        proc = run_cli(*command, "--out-dir", str(out), "--no-detect")
        assert proc.returncode == 2 and f"--out-dir {out}: {kind}" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "internal error" not in proc.stderr
    assert afile.read_text() == "x\n"
    proc = run_cli(*command[:5], "--save-adapter", str(afile), "--out-dir", str(tmp_path / "o")) \
        if command[0] == "probe" else run_cli(*command, "--storage", "/dev/null", "--out-dir", str(tmp_path / "o"))
    assert proc.returncode == 2 and ("--save-adapter" in proc.stderr or "--storage /dev/null" in proc.stderr)
    assert not (tmp_path / "o").exists()  # refused before anything ran or was written


# --- writing through symbolic links (the CLI) -------------------------------------------------

RECOMMEND = ("recommend", "--model", "llama-8b", "--method", "sft", "--no-detect")


def test_output_through_a_link_lands_in_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("keep\n")
    link = tmp_path / "l.yml"
    link.symlink_to("target.txt")
    chain = tmp_path / "chain.yml"
    chain.symlink_to("l.yml")  # chain -> l.yml -> target.txt
    for out in (link, chain):
        target.write_text("keep\n")
        proc = run_cli(*RECOMMEND, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert out.is_symlink() and link.is_symlink() and os.readlink(link) == "target.txt"
        assert target.read_text().startswith("model  llama-3.1-8b"), target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.yml", "l.yml", "target.txt"]  # no temp file


def test_a_link_to_a_missing_file_in_an_existing_directory_creates_the_target(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    link = tmp_path / "fresh.yml"
    link.symlink_to(Path("real") / "new.yml")
    proc = run_cli(*RECOMMEND, "-o", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and (tmp_path / "real" / "new.yml").read_text().startswith("model  llama-3.1-8b")


def test_links_to_what_is_not_a_regular_file_are_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "f")
    for name, to, needle in (("dir.yml", "d", "is a directory"), ("null.yml", "/dev/null", "character device"),
                             ("fifo.yml", "f", "FIFO"),
                             ("dangling.yml", "missing/x.yml", "directory " + str(tmp_path / "missing") + " does not exist")):
        link = tmp_path / name
        link.symlink_to(to)
        proc = run_cli(*RECOMMEND, "-o", str(link))
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert link.is_symlink() and os.readlink(link) == to
    assert not (tmp_path / "missing").exists() and not any((tmp_path / "d").iterdir())
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.stat(tmp_path / "f").st_mode)


def test_validate_fix_in_place_through_a_link_fixes_the_target(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "c.yaml"
    real.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nlearning_rate: 2.0e-2\n")
    link = tmp_path / "c.yaml"
    link.symlink_to(Path("real") / "c.yaml")
    proc = run_cli("validate", str(link), "--no-detect", "--fix", str(link))
    assert "wrote" in proc.stderr and "1 fix(es)" in proc.stderr, proc.stderr
    assert link.is_symlink() and "learning_rate: 2.0e-05" in real.read_text(), real.read_text()
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["c.yaml"]


def test_a_parameter_count_is_shown_at_its_own_scale(tmp_path: Path) -> None:
    """A test model built from a config (24K parameters) is not '0.00B'."""
    assert [fmt_count(n) for n in (8.03e9, 8.81e7, 3.5e5, 2.4e4)] == ["8.03B", "88.1M", "350.0K", "24.0K"]
    tiny = {"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 64, "max_position_embeddings": 128}
    (tmp_path / "config.json").write_text(json.dumps(tiny))
    out = run_cli("recommend", "--model", str(tmp_path / "config.json"), "--method", "sft", "--no-detect").stdout
    assert "0.00B params" not in out and "K params" in out


# --- text output carries no trailing spaces ------------------------------------------------------

TEXT_COMMANDS = [
    (*RECOMMEND, "--gpu", "h100"),
    ("memory", "--model", "llama-8b", "--method", "sft", "--gpu", "h100", "--no-detect"),
    ("schedule", "--cycles", "4", "--compare"),
    ("rules", "list"),
    ("gpus",),
    ("validate", "examples/configs/axolotl-mistral-attention-only.yml", "--gpu", "rtx-4090", "--fail-on", "never",
     "--no-detect"),
]


@pytest.mark.parametrize("args", TEXT_COMMANDS, ids=[" ".join(a[:2]) for a in TEXT_COMMANDS])
def test_text_output_lines_end_without_padding(args: tuple[str, ...], tmp_path: Path) -> None:
    """Rich pads table cells and titles to the column width; copied output must not carry it."""
    out = tmp_path / "out.txt"
    piped, written = run_cli(*args), run_cli(*args, "-o", str(out))
    coloured = run_cli(*args, env={"FORCE_COLOR": "1"})  # a terminal's colour codes around the padding
    assert piped.returncode == written.returncode == coloured.returncode == 0, piped.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured.stdout)
    assert "\x1b[" in coloured.stdout and plain == piped.stdout
    for text in (piped.stdout, out.read_text(), plain):
        assert len(text.splitlines()) > 1
        assert [ln for ln in text.splitlines() if ln != ln.rstrip()] == []
