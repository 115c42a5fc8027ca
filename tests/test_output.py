"""Outputs are written atomically and as readable as any file the user writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from advisor.output import write_atomic


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
