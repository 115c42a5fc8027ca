"""Training data for a probe: records in, fixed-length token sequences out.

Records come from a JSONL file (``text``; ``prompt`` / ``completion``; chat ``messages``;
``prompt`` / ``chosen`` / ``rejected`` pairs), a local ``datasets`` directory, or the built-in
corpus. Sequences are packed (documents joined with EOS and cut at the sequence length) or
padded to it; either way every micro-batch has the config's true shape. Labels of prompts and
padding are -100, so the loss is the one the trainer would compute.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.probe.corpus import NAME as CORPUS_NAME
from advisor.probe.corpus import corpus_texts
from advisor.probe.plan import ProbeInputError, ProbePlan
from advisor.probe.tokenizer import Codec

IGNORE = -100  # not-knowledge: the label index torch's cross-entropy skips
HELD_OUT_EVERY = 10  # not-knowledge: a tenth of the records for evaluation
MAX_DATA_BYTES = 2_000_000_000  # not-knowledge: larger than any probe needs


@dataclass
class Sequence:
    input_ids: list[int]
    labels: list[int]
    length: int = -1  # real tokens before padding; -1: all of them

    @property
    def real(self) -> int:
        return len(self.input_ids) if self.length < 0 else self.length


@dataclass
class Record:
    """One training example as token pieces: (ids, trained?) spans, and whether it is a pair."""

    pieces: list[list[tuple[str, bool]]]  # one list of (text, is_target) per sequence (pairs: two)


@dataclass
class ProbeData:
    train: list[Sequence]
    eval: list[Sequence]
    pad_id: int
    description: str
    notes: list[str] = field(default_factory=list)
    pairs: bool = False  # train holds (chosen, rejected) neighbours


def _text(value: Any, codec: Codec, notes: set[str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        text, how = codec.render_chat(value)
        notes.add(f"conversations rendered with {how}")
        return text
    raise ValueError("expected a string or a list of messages")


def record_shape(row: Any) -> str:
    """Which of the record shapes ``row`` is ("pair", "prompt-completion", "messages", "text"); a ValueError
    naming what it lacks otherwise. No tokenizer needed: the probe checks every record before a model loads."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "chosen" in row and "rejected" in row:
        return "pair"
    if "prompt" in row and "completion" in row:
        return "prompt-completion"
    if "messages" in row:
        return "messages"
    if "text" in row and isinstance(row["text"], str):
        return "text"
    raise ValueError(f"no text, prompt/completion, messages or prompt/chosen/rejected field (keys: {', '.join(row)})")


def parse_record(row: Any, codec: Codec, notes: set[str]) -> Record:
    shape = record_shape(row)
    if shape == "pair":
        prompt = _text(row.get("prompt", ""), codec, notes) if row.get("prompt") is not None else ""
        return Record([[(prompt, False), (_text(row["chosen"], codec, notes), True)],
                       [(prompt, False), (_text(row["rejected"], codec, notes), True)]])
    if shape == "prompt-completion":
        return Record([[(_text(row["prompt"], codec, notes), False), (_text(row["completion"], codec, notes), True)]])
    if shape == "messages":
        return Record([[(_text(row["messages"], codec, notes), True)]])
    return Record([[(row["text"], True)]])


def check_fields(path: Path, rows: Iterable[tuple[str, Any]], need: tuple[str, ...], method: str) -> list[Any]:
    """The rows, each checked to hold the fields a TRL trainer reads (``need``); a one-line error names the
    first line that lacks one."""
    out = []
    for where, row in rows:
        missing = [k for k in need if not isinstance(row, dict) or k not in row]
        if missing:
            raise ProbeInputError(f"--data {where}: no {', '.join(missing)} field "
                                  f"(the {method} probe reads {' / '.join(need)})")
        out.append(row)
    return out


def check_data(plan: ProbePlan) -> None:
    """Every --data record checked for the shape the probe's trainer reads, before a model loads (a bad line
    found after minutes of loading wastes the minutes)."""
    if plan.data.path is None:
        return
    from advisor.probe.trl_run import needed_fields

    path = Path(plan.data.path)
    need = needed_fields(plan)
    if need is not None:
        if path.is_dir():
            raise ProbeInputError(f"--data {path}: the {plan.method} probe reads a JSONL file, not a datasets "
                                  "directory", hint=f"one JSON object per line with {' / '.join(need)}")
        check_fields(path, _rows_jsonl(path), need, plan.method)
        return
    if path.is_dir():
        return  # a datasets directory: `datasets` loads it with the model (the package is the probe's to import)
    seen = 0
    for where, row in _rows_jsonl(path):
        try:
            record_shape(row)
        except ValueError as exc:
            raise ProbeInputError(f"--data {where}: {exc}") from exc
        seen += 1
    if not seen:
        raise ProbeInputError(f"--data {path}: no records")


def _rows_jsonl(path: Path) -> Iterable[tuple[str, Any]]:
    from advisor.safeio import load_json, read_text

    # safeio: a regular file only (a FIFO or a device cannot block or fill memory), within the size cap
    text = read_text(path, limit=MAX_DATA_BYTES, what="--data file", error=ProbeInputError)
    for no, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield f"{path}:{no}", load_json(line, f"--data {path}:{no}", ProbeInputError,
                                            expected="a JSON object per line")


def _rows_datasets(path: Path) -> tuple[list[Any], list[Any] | None]:
    try:
        import datasets
    except ImportError as exc:
        raise ProbeInputError(f"--data {path}: a datasets directory needs the `datasets` package",
                              hint="pip install datasets, or give a JSONL file") from exc
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise ProbeInputError(f"--data {path}: not a dataset saved with save_to_disk ({type(exc).__name__})") from exc
    if isinstance(loaded, datasets.DatasetDict):
        train_name = "train" if "train" in loaded else next(iter(loaded))
        eval_name = next((n for n in ("validation", "test", "eval") if n in loaded), None)
        return list(loaded[train_name]), list(loaded[eval_name]) if eval_name else None
    return list(loaded), None


def _encode(record: Record, codec: Codec, seq_len: int) -> list[Sequence]:
    out = []
    for pieces in record.pieces:
        ids: list[int] = []
        labels: list[int] = []
        for i, (text, target) in enumerate(pieces):
            if not text:
                continue
            part = codec.encode(text) if i == 0 or not ids else list(codec.encode_fn(text))
            ids.extend(part)
            labels.extend(part if target else [IGNORE] * len(part))
        ids.append(codec.eos_id)
        labels.append(codec.eos_id)
        out.append(Sequence(ids[:seq_len], labels[:seq_len]))
    return out


def pack(seqs: list[Sequence], seq_len: int, pad_id: int) -> list[Sequence]:
    """Join the sequences and cut them into blocks of seq_len (a short tail is padded, not dropped,
    when it is the only block)."""
    ids = [t for s in seqs for t in s.input_ids]
    labels = [t for s in seqs for t in s.labels]
    blocks = [Sequence(ids[i:i + seq_len], labels[i:i + seq_len]) for i in range(0, len(ids) - seq_len + 1, seq_len)]
    if not blocks and ids:
        blocks = [pad_to(Sequence(ids, labels), seq_len, pad_id)]
    return blocks


def pad_to(seq: Sequence, seq_len: int, pad_id: int) -> Sequence:
    missing = seq_len - len(seq.input_ids)
    return Sequence(seq.input_ids + [pad_id] * missing, seq.labels + [IGNORE] * missing, len(seq.input_ids))


def _finish(train_records: list[Record], eval_records: list[Record], codec: Codec, plan: ProbePlan,
            description: str, notes: set[str]) -> ProbeData:
    seq_len = plan.seq_len
    pairs = any(len(r.pieces) == 2 for r in train_records)
    train = [s for r in train_records for s in _encode(r, codec, seq_len)]
    held = [s for r in eval_records for s in _encode(r, codec, seq_len)]
    if plan.data.packing and not pairs:
        train, held = pack(train, seq_len, codec.pad_id), pack(held, seq_len, codec.pad_id)
        how = f"packed into sequences of {seq_len} tokens"
    else:
        train = [pad_to(s, seq_len, codec.pad_id) for s in train]
        held = [pad_to(s, seq_len, codec.pad_id) for s in held]
        how = f"padded to {seq_len} tokens" + (" (chosen / rejected pairs are not packed)" if pairs else "")
    if not held:
        held = train[-plan.data.eval_sequences:]
        notes.add("too little data for a held-out split: the eval loss is measured on training sequences")
    tokens = sum(sum(1 for t in s.labels if t != IGNORE) for s in train)
    return ProbeData(train=train, eval=held[:plan.data.eval_sequences], pad_id=codec.pad_id,
                     description=f"{description}: {len(train)} training sequences ({tokens} target tokens), "
                                 f"{min(len(held), plan.data.eval_sequences)} held-out; {how}",
                     notes=sorted(notes), pairs=pairs)


def load_data(plan: ProbePlan, codec: Codec) -> ProbeData:
    notes: set[str] = set()
    if plan.data.path is None:
        train_texts, held_texts = corpus_texts()
        return _finish([Record([[(t, True)]]) for t in train_texts], [Record([[(t, True)]]) for t in held_texts],
                       codec, plan, CORPUS_NAME, notes)
    path = Path(plan.data.path)
    eval_rows: list[Any] | None = None
    if path.is_dir():
        train_rows, eval_rows = _rows_datasets(path)
        rows: list[tuple[str, Any]] = [(f"{path}[{i}]", r) for i, r in enumerate(train_rows)]
    else:
        rows = list(_rows_jsonl(path))
    if not rows:
        raise ProbeInputError(f"--data {path}: no records")
    records = []
    for where, row in rows:
        try:
            records.append(parse_record(row, codec, notes))
        except ValueError as exc:
            raise ProbeInputError(f"--data {where}: {exc}") from exc
    if eval_rows is not None:
        try:
            held = [parse_record(r, codec, notes) for r in eval_rows]
        except ValueError as exc:
            raise ProbeInputError(f"--data {path} (held-out split): {exc}") from exc
        train = records
    elif len(records) >= 2:
        train = [r for i, r in enumerate(records) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
        held = [r for i, r in enumerate(records) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1] or records[-1:]
    else:
        train, held = records, []
    return _finish(train, held, codec, plan, f"{path} ({len(records)} records)", notes)
