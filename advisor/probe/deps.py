"""The heavy imports, in one place: a missing package names the extra that brings it."""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from types import ModuleType

from advisor.probe.result import CouldNotRun

EXTRA_HINT = "pip install 'llm-finetune-advisor[probe]' (on a GPU machine install the CUDA build of torch first)"
PACKAGES = ("torch", "transformers", "peft", "accelerate")


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise CouldNotRun(f"advisor probe needs {name.split('.')[0]}, which is not installed ({exc})",
                          hint=EXTRA_HINT) from exc


def require(*, bitsandbytes: bool = False) -> None:
    """Import what a probe run needs, or fail with one line naming llm-finetune-advisor[probe]."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # bitsandbytes' CPU backend logs a warning about an optional kernel package at import (peft
    # imports bitsandbytes whenever it is installed).
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # transformers' Hub-kernel loader (the `kernels` package, which recent transformers releases depend on)
    # logs that it skips its publisher check whenever HF_HUB_OFFLINE is set: not the user's concern.
    logging.getLogger("kernels").setLevel(logging.ERROR)
    for name in PACKAGES:
        _import(name)
    if bitsandbytes:
        _import("bitsandbytes")
    tf_logging = _import("transformers.utils.logging")
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    # transformers 5 renamed gradient checkpointing; peft still calls the old name.
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", message=".*use_reentrant.*")


def require_trl() -> None:
    """TRL, for the methods TRL's trainers train (DPO, GRPO, ...)."""
    _import("trl")
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="trl")
