"""A hub id's config.json: from the local Hugging Face cache (no network, no import of
huggingface_hub), or from the hub itself through huggingface_hub (the optional `hub` extra).

Only config.json is ever asked for: never the weights. The cache layout is the hub's own
(huggingface_hub's file_download.py writes it): ``models--ORG--NAME/refs/main`` holds the commit
and ``models--ORG--NAME/snapshots/<commit>/config.json`` the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import FactError
from advisor.safeio import clip, clip_path, read_text

# A hub repo id as huggingface_hub's validate_repo_id accepts it: ORG/NAME of letters, digits,
# '-', '_' and '.', neither part starting with '.' (so no '..' climbs out of the cache).
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_REVISION = re.compile(r"^[\w.-]{1,200}$")  # a commit hash; a ref name is read from refs/ first
MAX_REF_BYTES = 1_000
# The install command a missing huggingface_hub names (pyproject.toml's `hub` extra).
HUB_EXTRA = "pip install 'llm-finetune-advisor[hub]'"
# huggingface_hub's constants._is_true: the spellings HF_HUB_OFFLINE counts as set.
_TRUE = ("1", "ON", "YES", "TRUE")  # constants.ENV_VARS_TRUE_VALUES


@dataclass(frozen=True)
class Found:
    """A config.json on disk and the hub revision (commit) it belongs to."""

    path: Path
    revision: str


def is_repo_id(spec: str) -> bool:
    return bool(_REPO_ID.match(spec)) and ".." not in spec and not spec.endswith((".json", ".git"))


def cache_dir() -> Path:
    """Where huggingface_hub keeps its cache (constants.py): HF_HUB_CACHE (or the older
    HUGGINGFACE_HUB_CACHE), else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub (~/.cache)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    home = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def offline() -> bool:
    """huggingface_hub's own test (constants.HF_HUB_OFFLINE): HF_HUB_OFFLINE, else TRANSFORMERS_OFFLINE."""
    return (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip().upper() in _TRUE


def cached_config(repo_id: str) -> Found | None:
    """The cached config.json of ``repo_id`` at the revision refs/main names; None when the cache
    holds no such repo, no refs/main or no config.json in that snapshot."""
    if not is_repo_id(repo_id):
        return None
    folder = cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = folder / "refs" / "main"
    if not ref.is_file():
        return None
    revision = read_text(ref, limit=MAX_REF_BYTES, what="Hugging Face cache ref", error=FactError).strip()
    if not _REVISION.match(revision) or revision.startswith("."):
        raise FactError(f"{clip_path(ref)}: not a revision, got {clip(revision)}",
                        hint="the Hugging Face cache is damaged: remove this repo's folder from it")
    config = folder / "snapshots" / revision / "config.json"
    return Found(config, revision) if config.exists() else None


_FAILED: dict[str, str] = {}  # repo id (or "" for the hub itself) -> why it failed: asked once per process


def _unreachable(endpoint: str) -> str | None:
    """Why the hub's host cannot be reached, found in milliseconds: without it a machine with no
    network waits through huggingface_hub's five retries (about 25 s) for every model."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(endpoint).hostname or endpoint
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        return f"no network: cannot resolve {host} ({exc.strerror or exc})"
    return None


def hub_unreachable() -> str | None:
    """Why the hub cannot be asked now (HF_HUB_OFFLINE, or its host does not resolve), asked once per process;
    None when it may be. A loader told so reads only the local cache (local_files_only) and fails at once."""
    if offline():
        return "HF_HUB_OFFLINE is set, so the hub was not asked"
    if "" not in _FAILED:
        try:
            from huggingface_hub import constants
        except ImportError:
            return f"huggingface_hub is not installed ({HUB_EXTRA})"
        down = _unreachable(constants.ENDPOINT)
        if down is None:
            return None
        _FAILED[""] = down
    return _FAILED[""]


def hub_config(repo_id: str) -> Found | str:
    """``repo_id``'s config.json fetched from the hub (into the cache), or why it could not be."""
    if not is_repo_id(repo_id):
        return "not a hub repo id"
    if offline():
        return "HF_HUB_OFFLINE is set, so the hub was not asked"
    for key in ("", repo_id):
        if key in _FAILED:
            return _FAILED[key]
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return f"huggingface_hub is not installed ({HUB_EXTRA})"
    if (down := hub_unreachable()) is not None:
        return down
    try:
        # cache_dir passed: huggingface_hub reads HF_HUB_CACHE once at import, advisor at each call
        path = Path(hf_hub_download(repo_id, "config.json", cache_dir=cache_dir()))
    except Exception as exc:  # no network, no such repo, gated, a proxy's error: one reason either way
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        _FAILED[repo_id] = f"the hub did not serve its config.json: {type(exc).__name__}: {first}"
        return _FAILED[repo_id]
    return Found(path, path.parent.name)
