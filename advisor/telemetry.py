"""Telemetry: training logs read into one shape, whatever wrote them.

Readers: Hugging Face trainer_state.json (log_history), JSONL and CSV logs, TensorBoard event
files (through tensorboard's own reader, an optional extra), and a directory of RAFT cycle runs
(one log per cycle). A probe run will produce the same Telemetry, judged by the same signal rules.
"""

from __future__ import annotations

import csv
import math
import re
import stat
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError
from advisor.safeio import clip, clip_path, load_json, read_lines, read_text, stat_path

MAX_LOG_BYTES = 200_000_000  # not-knowledge: a log this large is not a training log
MAX_STEP = 10**15  # not-knowledge: more optimizer steps than any run takes

# Column / tag names the loggers people use write for each series.
ALIASES = {
    "loss": ("loss", "train/loss"),  # not train_loss: Trainer's end-of-run summary is an average
    "grad_norm": ("grad_norm", "train/grad_norm", "gradient_norm", "grad-norm"),
    "learning_rate": ("learning_rate", "train/learning_rate", "lr"),
    "eval_loss": ("eval_loss", "eval/loss", "val_loss", "validation_loss"),
    "verification_rate": ("verification_rate", "verify_rate", "pass_rate", "accuracy"),
}
SERIES = ("loss", "grad_norm", "learning_rate", "eval_loss")


class LogError(AdvisorError):
    """A training log that cannot be read."""


# What a Telemetry's `steps` hold, singular and plural, as a sign's evidence says it ("at steps 7, 14").
POSITIONS = {"step": "steps", "log entry": "log entries", "cycle-history point": "cycle-history points",
             "point": "points"}


@dataclass
class Telemetry:
    source: str
    reader: str
    series: dict[str, list[float]] = field(default_factory=dict)
    # Where each point is, as ``position`` names it (a key of POSITIONS): the step the log states, or
    # the row's 1-based entry in the file where the log states none. A null value is no point, so a
    # series' own index is not a place in the log.
    steps: dict[str, list[int]] = field(default_factory=dict)
    position: str = "step"
    cycle_scores: list[float] = field(default_factory=list)
    cycle_metric: str | None = None
    cycles: list[str] = field(default_factory=list)
    # A cycle history's points inside their cycles, as ``within(...)`` names them: (the cycle's entry in
    # the directory, its log's POSITIONS key, the step there). Each cycle counts its steps from the start
    # again, so a history point alone does not say which cycle's log to open.
    inside: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)

    def add(self, name: str, step: int, value: Any) -> None:
        number = _number(value)
        if number is None:
            return
        self.series.setdefault(name, []).append(number)
        self.steps.setdefault(name, []).append(step)

    def place(self, name: str, points: Sequence[int]) -> list[int]:
        """Where a series' 1-based points are in the log, as ``position`` names them."""
        steps = self.steps.get(name, [])
        return [steps[p - 1] for p in points if 1 <= p <= len(steps)]

    def within(self, name: str, points: Sequence[int]) -> list[tuple[str, str, int]]:
        """Where a series' 1-based points are inside their cycles (empty: not a cycle history)."""
        inside = self.inside.get(name, [])
        return [inside[p - 1] for p in points if 1 <= p <= len(inside)]


def _canonical(key: str) -> str | None:
    low = key.strip().lower()
    for name, names in ALIASES.items():
        if low in names:
            return name
    return None


STEP_KEYS = ("step", "global_step")
LOGGER_PREFIX = "train/"  # what TensorBoard / W&B put before a trainer's own keys


def series_name(key: str) -> str | None:
    """The series a log key feeds: a known alias's name, else the key itself with every run of characters
    other than letters and digits as one underscore (TRL's ``rewards/margins`` -> ``rewards_margins``,
    ``completions/clipped_ratio`` -> ``completions_clipped_ratio``): the signal rules name these series, so a
    trainer's own metrics need no list here. None: a step counter, or nothing left."""
    name = _canonical(key)
    if name is not None:
        return name
    low = key.strip().lower()
    if low in STEP_KEYS:
        return None
    low = low.removeprefix(LOGGER_PREFIX)
    return re.sub(r"[^a-z0-9]+", "_", low).strip("_") or None


def _number(value: Any) -> float | None:
    """The value as a number (CSV cells and numbers written as text included); None: not a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer past float's range: as good as infinite (SIG009 counts it)
        return math.inf if value > 0 else -math.inf


def _step(where: str, row: dict[str, Any]) -> int | None:
    """The step the row states; None where it states none (no key, null, NaN). A step that is not a
    number, or not a plausible one (inf, 1e999, 400 digits), is an error naming it."""
    key = "step" if "step" in row else "global_step"
    raw = row.get(key)
    if raw is None or raw == "":
        return None
    number = _number(raw)
    if number is not None and math.isnan(number):
        return None
    if number is None or not 0 <= number <= MAX_STEP or number != int(number):
        raise LogError(f"{where}: key '{key}': {clip(raw)} is not a step number",
                       hint=f"steps are whole numbers from 0 below {MAX_STEP:.0e}")
    return int(number)


class _Points:
    """Rows read one at a time into the points a Telemetry holds, each series as arrays of numbers (a
    row itself is not kept: a log of a million rows is its points, not a million dicts).

    One point per row and metric. A null / empty value is no point (trainers write null for the
    metrics a row lacks, and NaN stays a point: SIG009 counts it); text where a number belongs is an
    error naming the row, the key and the value, never a point silently missing. A number belongs to a
    known metric's key and to any key that holds a number in some row (a text column beside the metrics,
    a run name, is not telemetry), so text before a key's first number is kept until the key shows
    one. The points are placed by the steps the rows state, or by their entries where a row with a
    point states none. Of several faults, ``telemetry`` raises the first in the file; a step that goes
    back only after every row is read."""

    def __init__(self, source: str, reader: str) -> None:
        self.source, self.reader = source, reader
        # Each series' values, the step each point's row states (-1: none) and its entry in the file.
        self.points: dict[str, tuple[array[float], array[int], array[int]]] = {}
        self.names: dict[str, str | None] = {}  # a key's series, worked out once per key, not per row
        self.numeric: set[str] = set()
        self.pending: dict[str, tuple[tuple[int, int], LogError]] = {}  # text in a key that holds no number yet
        self.fault: tuple[tuple[int, int], LogError] | None = None  # the first in the file: (row, key) and its error
        self.rows = 0
        self.stated = True  # every row with a point states its step
        self.last: tuple[int, str] | None = None  # the step and place of the last row with a point
        self.back: LogError | None = None

    def _name(self, key: str) -> str | None:
        if key not in self.names:
            self.names[key] = series_name(key)
            if _canonical(key) is not None:
                self.numeric.add(key)
        return self.names[key]

    def _fail(self, at: tuple[int, int], error: LogError) -> None:
        if self.fault is None or at < self.fault[0]:
            self.fault = (at, error)

    def add(self, where: str, entry: int, row: dict[str, Any]) -> None:
        self.rows += 1
        names, numeric = self.names, self.numeric
        points: list[tuple[str, float]] = []
        for column, (raw_key, value) in enumerate(row.items()):
            if value is None or value == "":
                continue
            key = raw_key if type(raw_key) is str else str(raw_key)
            name = names[key] if key in names else self._name(key)
            if name is None:
                continue
            number = value if type(value) is float else _number(value)  # most values: a float, as it is
            if number is not None:
                if key not in numeric:
                    numeric.add(key)
                    if key in self.pending:
                        self._fail(*self.pending.pop(key))
                points.append((name, number))
                continue
            error = LogError(f"{where}: key {clip(key)}: {clip(value)} is not a number",
                             hint="a metric's value is a number, or null where the row has none")
            if key in numeric:
                self._fail((self.rows, column), error)
            elif key not in self.pending:
                self.pending[key] = ((self.rows, column), error)
        try:
            step = _step(where, row)
        except LogError as exc:
            self._fail((self.rows, len(row)), exc)
            return
        if not points:
            return
        if step is None:
            self.stated = False
        else:
            if self.last is not None and step < self.last[0] and self.back is None:
                self.back = LogError(f"{where}: step {step} comes after step {self.last[0]} "
                                     f"(line {self.last[1].rpartition(':')[2]}): the steps go back",
                                     hint="two runs in one log? give one run's log (RAFT's cycles: --cycles-dir)")
            self.last = (step, where)
        for name, number in points:
            if name not in self.points:
                self.points[name] = (array("d"), array("q"), array("q"))
            values, steps, entries = self.points[name]
            values.append(number)
            steps.append(-1 if step is None else step)
            entries.append(entry)

    def telemetry(self) -> Telemetry:
        if self.fault is not None:
            raise self.fault[1]
        if self.stated and self.back is not None:  # two runs in one log (a resumed run appended), read as one curve
            raise self.back
        tel = Telemetry(source=self.source, reader=self.reader, position="step" if self.stated else "log entry")
        for name, (values, steps, entries) in self.points.items():
            tel.series[name] = values.tolist()
            tel.steps[name] = (steps if self.stated else entries).tolist()
        return tel


def _check_file(path: Path) -> None:
    info = stat_path(path, "training log", LogError)
    if stat.S_ISREG(info.st_mode) and info.st_size == 0:
        raise LogError(f"{clip_path(path)}: empty file")


def _read_text(path: Path) -> str:
    return read_text(path, limit=MAX_LOG_BYTES, what="training log", error=LogError,
                     binary_hint="TensorBoard logs are read from their directory")


def read_trainer_state(path: Path) -> Telemetry:
    data = load_json(_read_text(path), clip_path(path), LogError)
    history = data.get("log_history") if isinstance(data, dict) else None
    if not isinstance(history, list):
        raise LogError(f"{path}: no 'log_history' list: not a trainer_state.json")
    points = _Points(str(path), "trainer_state.json")
    for i, row in enumerate(history):
        if isinstance(row, dict):
            points.add(f"{clip_path(path)}: log_history[{i}]", i + 1, row)
    return points.telemetry()


def _log_lines(path: Path) -> Iterator[str]:
    return read_lines(path, limit=MAX_LOG_BYTES, what="training log", error=LogError,
                      binary_hint="TensorBoard logs are read from their directory")


def read_jsonl(path: Path) -> Telemetry:
    points = _Points(str(path), "jsonl")
    shown = clip_path(path)
    bad: LogError | None = None  # a bad line; the lines after it are read for a fault of the whole file
    for no, line in enumerate(_log_lines(path), 1):
        if bad is not None or not line.strip():
            continue
        try:
            row = load_json(line, f"{shown}:{no}", LogError, "a JSON object per line")
            if not isinstance(row, dict):
                raise LogError(f"{path}:{no}: expected a JSON object, got {type(row).__name__}")
        except LogError as exc:
            bad = exc
            continue
        points.add(f"{shown}:{no}", points.rows + 1, row)
    if bad is not None:
        raise bad
    return points.telemetry()


def read_csv(path: Path) -> Telemetry:
    points = _Points(str(path), "csv")
    shown = clip_path(path)
    lines = _log_lines(path)
    reader = csv.DictReader(lines)
    try:
        for n, row in enumerate(reader, 1):
            points.add(f"{shown}:{reader.line_num}", n, row)
    except csv.Error as exc:  # a field past csv's size limit, a NUL, ...
        for _ in lines:  # a fault of the whole file comes first
            pass
        raise LogError(f"{shown}: not a CSV log: {clip(str(exc), 120)}") from exc
    if not reader.fieldnames or not any(_canonical(f) for f in reader.fieldnames):
        raise LogError(f"{shown}: no loss, grad_norm, learning_rate or eval_loss column",
                       hint=f"columns found: {clip(', '.join(reader.fieldnames or []))}")
    return points.telemetry()


def read_tensorboard(directory: Path) -> Telemetry:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as exc:
        raise LogError("reading TensorBoard logs needs tensorboard",
                       hint="pip install 'llm-finetune-advisor[tensorboard]'") from exc
    import stat

    from advisor.safeio import clip_path, file_kind, stat_path

    for event_file in directory.glob("events.out.tfevents*"):  # the files EventAccumulator opens
        mode = stat_path(event_file, "TensorBoard event file", LogError).st_mode
        if not stat.S_ISREG(mode):  # a FIFO would block the reader for good
            raise LogError(f"{clip_path(event_file)}: is {file_kind(mode)}, not a regular file",
                           hint="give a TensorBoard log directory of event files")
    acc = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    acc.Reload()
    tel = Telemetry(source=str(directory), reader="tensorboard")
    for tag in acc.Tags().get("scalars", []):
        name = series_name(tag)
        if name is None:
            continue
        for event in acc.Scalars(tag):
            tel.add(name, int(event.step), event.value)
    if not tel.series:
        raise LogError(f"{directory}: no loss, grad_norm, learning_rate or eval_loss scalars in the event files")
    return tel


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def read_log(path: Path) -> Telemetry:
    """Any single log: a trainer_state.json, a .jsonl, a .csv, or a TensorBoard directory."""
    _check_file(path)
    if path.is_dir():
        if any(path.rglob("events.out.tfevents*")):
            return read_tensorboard(path)
        if (path / "trainer_state.json").is_file():
            return read_trainer_state(path / "trainer_state.json")
        raise LogError(f"{path}: no trainer_state.json or TensorBoard event files in this directory",
                       hint="give the log file itself, or --cycles-dir for a directory of RAFT cycles")
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.suffix == ".csv":
        return read_csv(path)
    if path.suffix == ".json":
        return read_trainer_state(path)
    raise LogError(f"{path}: unknown log type {path.suffix or '(none)'}",
                   hint="trainer_state.json, .jsonl, .csv or a TensorBoard directory")


LOG_SUFFIXES = (".jsonl", ".csv", ".json")
SAMPLE_NAMES = ("samples", "sample", "generations", "outputs")  # what --samples reads, not a log


def _cycle_log(folder: Path) -> Path:
    """The log inside one cycle's folder (cycle_N/log.jsonl): a trainer_state.json or TensorBoard
    events, else its one .jsonl / .csv / .json file that is not a samples file."""
    if (folder / "trainer_state.json").is_file() or any(folder.rglob("events.out.tfevents*")):
        return folder
    logs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in LOG_SUFFIXES
                  and not p.name.startswith(".") and p.stem.lower() not in SAMPLE_NAMES)
    if len(logs) != 1:
        found = ", ".join(p.name for p in logs[:5]) or "none"
        raise LogError(f"{clip_path(folder)}: a cycle folder needs exactly one log (.jsonl, .csv, trainer_state.json "
                       f"or TensorBoard events), found {clip(found)}",
                       hint="one folder per cycle holding one log, or flat cycle_N.jsonl files")
    return logs[0]


def read_cycles(directory: Path) -> Telemetry:
    """A directory of RAFT cycle runs in natural order, in either layout: one log file per cycle
    (cycle_1.jsonl, cycle_2.jsonl, ...) or one folder per cycle holding its log (cycle_1/log.jsonl); entries
    whose name holds no number are not cycles."""
    layout = "cycle_1.jsonl, cycle_2.jsonl, ... or cycle_1/, cycle_2/, ... each holding its log"
    if not stat.S_ISDIR(stat_path(directory, "cycles directory", LogError).st_mode):
        raise LogError(f"{clip_path(directory)}: --cycles-dir needs a directory of per-cycle logs",
                       hint=f"a directory of {layout}; a single log is `advisor diagnose LOG`")
    # A cycle is named by its number (cycle_3.jsonl, cycle_3/): a README.md, notes.txt or samples.jsonl beside
    # the cycles is none, so it is left out rather than read as one (or stopping the run as an unknown log type)
    entries = sorted((p for p in directory.iterdir() if not p.name.startswith(".") and re.search(r"\d", p.name)),
                     key=_natural_key)
    if len(entries) < 2:
        raise LogError(f"{clip_path(directory)}: found {len(entries)} cycle log(s); a cycle history needs two or more",
                       hint=f"one entry per cycle: {layout}" + ("; a single run's log is `advisor diagnose LOG`"
                                                               if entries else ""))
    # Each cycle counts its steps from the start again: a point is placed by its place in the history,
    # and named by its cycle and the step its own log states.
    total = Telemetry(source=str(directory), reader="cycles", position="cycle-history point")
    for entry in entries:
        tel = read_log(_cycle_log(entry) if entry.is_dir() else entry)
        for name, values in tel.series.items():
            for value, step in zip(values, tel.steps[name], strict=True):
                total.add(name, len(total.series.get(name, ())) + 1, value)
                total.inside.setdefault(name, []).append((entry.name, tel.position, step))
        total.cycles.append(entry.name)
        if tel.series.get("verification_rate"):
            total.cycle_metric = "verification_rate"
            total.cycle_scores.append(tel.series["verification_rate"][-1])
        elif tel.series.get("eval_loss"):
            total.cycle_metric = total.cycle_metric or "eval_loss"
            total.cycle_scores.append(-tel.series["eval_loss"][-1])  # lower loss scores higher
        elif tel.series.get("loss"):
            total.cycle_metric = total.cycle_metric or "final training loss"
            total.cycle_scores.append(-tel.series["loss"][-1])
    if len(total.cycle_scores) != len(entries):
        total.cycle_scores = []  # cycles without a common metric cannot be compared
    return total


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over the samples (Li et al., 2016): low means repetitive."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        tokens = text.split()
        grams.extend(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return len(set(grams)) / len(grams) if grams else math.nan


def read_samples(path: Path) -> list[str]:
    _check_file(path)
    texts = []
    for no, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            row = load_json(line, f"{clip_path(path)}:{no}", LogError)
            text = next((row[k] for k in ("text", "completion", "output", "response") if isinstance(row, dict)
                         and isinstance(row.get(k), str)), None)
            if text is None:
                raise LogError(f"{path}:{no}: no text, completion, output or response field")
            texts.append(text)
        else:
            texts.append(line)
    if not texts:
        raise LogError(f"{path}: no samples")
    return texts
