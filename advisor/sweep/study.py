"""Sweeps as optuna studies: storage, the queue of learning rates, workers, resumption.

Every learning rate a sweep will try is enqueued once, when the study is created; workers (this
process, or ``advisor sweep --worker`` on other machines sharing the storage) pop waiting trials
until none is left, so each trial runs exactly once whoever runs it. The sweep's specification
(what to probe, steps, strategy) lives in the study's user attributes: a worker needs only the
storage URL and the study name. A trial left RUNNING by a process that died on this machine is
marked failed and its learning rate enqueued again, which is how an interrupted sweep resumes
without repeating finished trials.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError

SPEC_ATTR = "advisor_sweep_spec"
RANGE_ATTR = "advisor_range_test"
OWNER_ATTR = "advisor_owner"
RESULT_ATTR = "advisor_run"
JOURNAL_NAME = "optuna-journal.log"
POLL_S = 2.0  # not-knowledge: how often a finishing sweep looks for trials other workers still run
# not-knowledge: a live worker names itself (OWNER_ATTR) in the journal write right after it takes a trial, so
# a RUNNING trial still unnamed this long after it started belongs to a process killed between the two writes
ORPHAN_S = 30.0


class SweepError(AdvisorError):
    """A sweep that cannot start or continue (storage, study, specification)."""


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        from advisor.probe.result import CouldNotRun

        raise CouldNotRun("advisor sweep needs optuna, which is not installed",
                          hint="pip install 'llm-finetune-advisor[sweep]'") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_storage(url: str | None, out_dir: Path | None) -> Any:
    """The embedded journal file under the output directory by default; an RDB URL
    (postgresql://, mysql://, sqlite:///) or a journal file path when given."""
    optuna = _optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None:
        if out_dir is None:
            raise SweepError("--worker needs --storage", hint="the URL the sweep's first process was given")
        out_dir.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(out_dir / JOURNAL_NAME)))
    if "://" in url:
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or an unreachable server
            raise SweepError(f"--storage {url!r}: cannot open: {str(exc).splitlines()[0]}",
                             hint="an RDB URL such as postgresql://user@host/db, or a journal file path") from exc
    path = Path(url).expanduser()
    if not path.parent.is_dir():
        raise SweepError(f"--storage {url!r}: directory {path.parent} does not exist")
    from advisor.output import check_target

    # a journal is appended to and fsync'd: only a regular file (or none yet), never a device or a FIFO
    try:
        target = check_target(path)
    except AdvisorError as exc:
        raise SweepError(f"--storage {exc.message}", hint="a journal file path, or an RDB URL") from exc
    return JournalStorage(JournalFileBackend(str(target)))


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str) -> bool | None:
    """Whether the process that owns a trial still runs; None when it runs on another host."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Queue:
    """One sweep's study: its specification and the learning rates it tries."""

    study: Any
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.study.study_name)


def create_or_load(storage: Any, name: str, spec: dict[str, Any], pruner: Any = None, where: str = "") -> Queue:
    """Create the study with ``spec`` or load it; an existing study must hold the same spec. ``where``: the
    storage as the user names it (the journal file, or the --storage URL), for the hint."""
    optuna = _optuna()
    try:
        study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    except KeyError:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize", pruner=pruner,
                                    load_if_exists=True)
        if SPEC_ATTR not in study.user_attrs:
            study.set_user_attr(SPEC_ATTR, json.dumps(spec, sort_keys=True))
            return Queue(study, spec)
    stored = json.loads(study.user_attrs.get(SPEC_ATTR, "null"))
    if stored is None:
        raise SweepError(f"study {name!r} was not created by advisor sweep", hint="pick another --study name")
    if stored != spec:
        differ = sorted(k for k in set(stored) | set(spec) if stored.get(k) != spec.get(k))
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
        if not done:  # a first run that stopped before any trial finished (a model that did not load)
            raise SweepError(f"study {name!r} exists with a different specification ({', '.join(differ)}), and none "
                             "of its runs finished",
                             hint=f"it trained nothing: remove {where or 'its storage'} and run again, or give a new "
                                  "--study name or --out-dir directory")
        raise SweepError(f"study {name!r} exists with a different specification ({', '.join(differ)})",
                         hint="resume with the same arguments, or give a new --study name or --out-dir directory")
    return Queue(study, stored)


def load_for_worker(storage: Any, name: str, pruner_for: Callable[[dict[str, Any]], Any]) -> Queue:
    optuna = _optuna()
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError as exc:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise SweepError(f"--study {name!r}: no such study in the storage",
                         hint=f"studies there: {', '.join(names) or 'none'}") from exc
    if SPEC_ATTR not in study.user_attrs:
        raise SweepError(f"study {name!r} was not created by advisor sweep")
    spec = json.loads(study.user_attrs[SPEC_ATTR])
    study = optuna.load_study(study_name=name, storage=storage, pruner=pruner_for(spec))
    return Queue(study, spec)


def enqueue(queue: Queue, lrs: list[float]) -> None:
    for lr in lrs:
        queue.study.enqueue_trial({"lr": lr}, skip_if_exists=True)


def _orphaned(trial: Any, now: datetime) -> bool:
    """Whether a RUNNING trial's process is gone: its owner died on this host, or it never named an owner and
    started over ORPHAN_S ago (killed between taking the trial and naming itself)."""
    owner = trial.user_attrs.get(OWNER_ATTR, "")
    if owner:
        return _alive(owner) is False
    start = trial.datetime_start
    return start is not None and (now - start).total_seconds() > ORPHAN_S


def _trial_lr(trial: Any) -> float | None:
    """The learning rate a trial runs: suggested, or still only the one it was enqueued with."""
    lr = trial.params.get("lr", (trial.system_attrs.get("fixed_params") or {}).get("lr"))
    return None if lr is None else float(lr)


def recover(queue: Queue) -> list[float]:
    """Fail the trials whose process is gone and enqueue their learning rates again."""
    from optuna.trial import TrialState

    _optuna()
    again = []
    now = datetime.now()  # optuna stamps datetime_start with the local, naive time
    for trial in queue.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lr = _trial_lr(trial)
        if lr is not None and _orphaned(trial, now):
            queue.study.tell(trial.number, state=TrialState.FAIL)
            queue.study.enqueue_trial({"lr": lr})
            again.append(lr)
    return again


Objective = Callable[[Any, float], float]  # (optuna trial, lr) -> final eval loss; may raise TrialPruned


def work(queue: Queue, objective: Objective, *, on_start: Callable[[int, float], None] | None = None) -> int:
    """Run waiting trials until none is left. Returns how many this process ran."""
    optuna = _optuna()
    from optuna.trial import TrialState

    ran = 0
    study = queue.study
    while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial = study.ask()
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        fixed = frozen.system_attrs.get("fixed_params")
        if not fixed or "lr" not in fixed:
            # Another worker took the last waiting trial between our look and our ask: optuna made a
            # fresh trial instead. It must not run (it has no learning rate); close it as failed.
            trial.set_user_attr("advisor_note", "no waiting trial left when asked; not a sweep run")
            study.tell(trial, state=TrialState.FAIL)
            break
        trial.set_user_attr(OWNER_ATTR, _owner())
        lr = float(trial.suggest_float("lr", fixed["lr"], fixed["lr"]))
        if on_start is not None:
            on_start(trial.number, lr)
        try:
            value = objective(trial, lr)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            if value != value or value in (float("inf"), float("-inf")):
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, value)
        ran += 1
    return ran


def others_running(queue: Queue) -> int:
    """Trials other live processes still run (dead owners on this host are recovered first)."""
    from optuna.trial import TrialState

    recover(queue)
    return len(queue.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def drain(queue: Queue, objective: Objective, *, on_start: Callable[[int, float], None] | None = None,
          on_wait: Callable[[int], None] | None = None) -> int:
    """Work until no trial waits and no other worker runs one (re-running what a dead worker left)."""
    ran = 0
    while True:
        ran += work(queue, objective, on_start=on_start)
        running = others_running(queue)
        if not running and not _waiting(queue):
            return ran
        if running and on_wait is not None:
            on_wait(running)
        if running:
            time.sleep(POLL_S)


def _waiting(queue: Queue) -> int:
    from optuna.trial import TrialState

    return len(queue.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
