from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from advisor.rulebook.load import Rulebook, load_rulebook

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests' own user cache (rulebook/cache.py): none reads or fills the developer's ~/.cache/advisor,
    whose entries a test's temporary rule directories would otherwise push out."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # model resolution never asks the hub in a test
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(scope="session")
def book() -> Rulebook:
    return load_rulebook()


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "advisor", *args],
        capture_output=True, text=True, cwd=cwd or REPO, env=full_env, timeout=120, check=False,
    )


def _postgres_bin() -> Path | None:
    """The directory of a PostgreSQL server's initdb / pg_ctl (Debian keeps them off PATH)."""
    import glob
    import shutil

    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None  # resolved: a symlinked initdb's siblings


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a Unix socket, for the sweep's --storage URL (optuna's RDB)."""
    import shutil
    import tempfile

    bindir = _postgres_bin()
    if bindir is None:
        message = "no PostgreSQL server (initdb): apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs it)")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="advisor-pg-"))
    root.chmod(0o755)
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(sock, user.pw_uid, user.pw_gid)
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]

    def run(*cmd: str) -> None:
        proc = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr or proc.stdout}"

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "advisor", "--no-sync")
    port = "54329"
    options = f"-c listen_addresses='' -k {sock} -p {port} -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start")
    try:
        run(str(bindir / "createdb"), "-h", str(sock), "-p", port, "-U", "advisor", "sweeps")
        yield f"postgresql+psycopg2://advisor@/sweeps?host={sock}&port={port}"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
