"""The built rulebook is cached by content hash (advisor/rulebook/cache.py): a hit builds nothing, any
change to what the book is built from builds afresh, and a bad entry is rebuilt, never an error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import advisor.rulebook.load as load
from advisor import api
from advisor.render.data import to_json
from advisor.rulebook import cache
from advisor.rulebook.load import Rulebook, build_rulebook, load_rulebook
from tests.conftest import REPO
from tests.test_rulebook import GOOD_RULE, SIGNAL_RULE, write

MINE = GOOD_RULE.replace("id: my-lr", "id: lr-base").replace("MY001", "LR001")  # replaces the built-in lr-base


@pytest.fixture
def builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A fresh cache directory; the list grows by one each time loading really builds the book."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ADVISOR_NO_CACHE", raising=False)
    calls: list[int] = []
    real = load.build_rulebook

    def counted(*args: object, **kwargs: object) -> Rulebook:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(load, "build_rulebook", counted)
    return calls


def _entries(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "cache" / "advisor" / "rulebook"
    return sorted(folder.glob("*.pickle")) if folder.is_dir() else []


def _json(book: Rulebook, **job: object) -> str:
    return to_json(api.recommend(book=book, detect_gpu=False, **job))  # type: ignore[arg-type]


def test_a_second_load_is_a_hit(tmp_path: Path, builds: list[int]) -> None:
    load_rulebook()
    assert len(builds) == 1 and len(_entries(tmp_path)) == 1
    book = load_rulebook()
    assert len(builds) == 1  # nothing built
    assert book.rules and book.parameters and book.memory


def test_a_changed_added_or_removed_rule_file_builds_afresh(tmp_path: Path, builds: list[int]) -> None:
    d = write(tmp_path, MINE)
    first = load_rulebook([d])
    load_rulebook([d])
    assert len(builds) == 1
    assert first.rules["lr-base"].cases[0].default == 1.0e-4

    write(tmp_path, MINE.replace("default: 1.0e-4", "default: 2.0e-4"))  # edited
    assert load_rulebook([d]).rules["lr-base"].cases[0].default == 2.0e-4
    assert len(builds) == 2

    write(tmp_path, SIGNAL_RULE, "more.yaml")  # added
    assert "my-sign" in load_rulebook([d]).rules
    assert len(builds) == 3

    (d / "more.yaml").unlink()  # removed
    assert "my-sign" not in load_rulebook([d]).rules
    assert len(builds) == 4
    load_rulebook([d])
    assert len(builds) == 4
    assert len(_entries(tmp_path)) == 1  # one entry per set of directories, replaced in place


def test_each_set_of_directories_has_its_own_entry(tmp_path: Path, builds: list[int]) -> None:
    d = write(tmp_path, MINE)
    assert load_rulebook().rules["lr-base"].file.parent != d
    assert load_rulebook([d]).rules["lr-base"].file.parent == d
    assert load_rulebook().rules["lr-base"].file.parent != d  # still the built-in book's entry
    assert len(builds) == 2 and len(_entries(tmp_path)) == 2


def test_evidence_files_are_neither_read_nor_part_of_the_key(tmp_path: Path, builds: list[int]) -> None:
    d = write(tmp_path, MINE)
    (d / "evidence").mkdir()
    (d / "evidence" / "runs.yaml").write_text("not: [valid")  # would fail to parse if it were read
    load_rulebook([d])
    (d / "evidence" / "runs.yaml").write_text("still: [not valid")
    load_rulebook([d])
    assert len(builds) == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated", "right key, garbled pickle", "right key, not a book",
                                    "empty"])
def test_a_damaged_entry_is_rebuilt_not_an_error(tmp_path: Path, builds: list[int], damage: str) -> None:
    import pickle

    expected = _json(load_rulebook(), model="llama-8b", method="grpo")
    (entry,) = _entries(tmp_path)
    blob = entry.read_bytes()
    head = len(cache.FORMAT) + 32  # the format line and the sha256 key
    entry.write_bytes({
        "garbage": b"\x00\xffthis is not a cache entry" * 100,
        "truncated": blob[: len(blob) // 2],
        "right key, garbled pickle": blob[:head] + b"\x80\x05garbled" + blob[head + 200:],
        "right key, not a book": blob[:head] + pickle.dumps({"rules": "not a Rulebook"}),
        "empty": b"",
    }[damage])
    book = load_rulebook()
    assert len(builds) == 2  # rebuilt
    assert _json(book, model="llama-8b", method="grpo") == expected
    load_rulebook()
    assert len(builds) == 2  # and the entry written again is good


def test_advisor_no_cache_builds_every_time_and_writes_nothing(tmp_path: Path, builds: list[int],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVISOR_NO_CACHE", "1")
    load_rulebook()
    load_rulebook()
    assert len(builds) == 2
    assert not (tmp_path / "cache").exists()


def test_a_cached_book_recommends_what_a_fresh_build_does(tmp_path: Path, builds: list[int]) -> None:
    d = write(tmp_path, MINE)
    jobs = [dict(model="llama-8b", method="grpo"), dict(model="qwen2.5-7b", method="sft", peft="qlora", gpu="rtx-4090"),
            dict(model="mixtral-8x7b", method="dpo", gpu="h100-80gb", situation="safety"),
            dict(model="llama-8b", method="raft", cycles=8)]
    for dirs in ([], [d]):
        load_rulebook(dirs)  # fills the cache
        cached = load_rulebook(dirs)
        fresh = build_rulebook(dirs)
        for job in jobs:
            assert _json(cached, **job) == _json(fresh, **job)
        assert cached.coefficients == fresh.coefficients and cached.memory == fresh.memory
        assert cached.models == fresh.models and cached.parameters == fresh.parameters
        assert [str(p) for p in cached.directories] == [str(p) for p in fresh.directories]
    assert len(builds) == 2  # one cache fill per set of directories (build_rulebook itself is not counted)


def test_old_entries_are_pruned(tmp_path: Path, builds: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "KEEP", 2)
    dirs = []
    for i in range(3):
        (tmp_path / f"set{i}").mkdir()
        dirs.append(write(tmp_path / f"set{i}", MINE))
    for d in dirs:
        load_rulebook([d])
    assert len(_entries(tmp_path)) == 2
    load_rulebook([dirs[2]])
    assert len(builds) == 3  # the newest two kept


def test_concurrent_first_runs_all_succeed(tmp_path: Path) -> None:
    """Several processes filling an empty cache at once: each gets a good book, one good entry is left."""
    env_cache = tmp_path / "cache"
    code = ("from advisor.rulebook.load import load_rulebook\n"
            "print(len(load_rulebook().rules))\n")
    import os

    env = {**os.environ, "XDG_CACHE_HOME": str(env_cache)}
    env.pop("ADVISOR_NO_CACHE", None)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO, env=env) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert len({out for out, _ in outs}) == 1
    folder = env_cache / "advisor" / "rulebook"
    assert [p.suffix for p in folder.iterdir()] == [".pickle"]  # no temporary file left behind


def test_the_key_covers_every_module_loading_imports() -> None:
    """cache.SOURCES names the advisor modules a built book comes from; a module loading starts to
    import must join it, or an edit to it would not invalidate the cache."""
    code = ("import json, sys\n"
            "from advisor.rulebook.load import build_rulebook\n"
            "build_rulebook()\n"
            "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()\n"
            "                        if n.startswith('advisor') and getattr(m, '__file__', None))))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    imported = {Path(p).resolve() for p in json.loads(proc.stdout)}
    assert imported <= {p.resolve() for p in cache._source_files()}
