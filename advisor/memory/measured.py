"""Real-GPU measurements of training peaks (bench/results/memory_accuracy.md) and the memory model's
prediction for each: the bench writes the tables, the tests read them back and recompute the
predictions with the current rules, so a rule change that parts the model from the real GPU fails.

A measurement table starts with the header row ``| case | lm_head | setup | max_memory_allocated |``;
``case`` reads ``<model> <full|lora|qlora> seq <n> batch <n> gc <on|off>``, ``lm_head`` says whether
the model's output embedding was tied to the input embedding as built, ``setup`` the optimizer and,
for adapters, ``LoRA r<rank> alpha <alpha> dropout <p>: <target> <target> ...``; for full fine-tuning
trained in bf16 throughout, ``<optimizer>; pure bf16``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from advisor.errors import AdvisorError
from advisor.facts.job import JobFacts
from advisor.memory.estimate import Estimate, estimate
from advisor.rulebook.load import Rulebook

HEADER = ("case", "lm_head", "setup", "max_memory_allocated")
COLUMNS = ("case", "lm_head", "setup", "max_memory_allocated", "predicted allocated", "ratio",
           "max_memory_reserved", "predicted reserved", "ratio", "reserved / allocated", "CUDA context")
_CASE = re.compile(r"^(?P<model>\S+) (?P<peft>full|lora|qlora) seq (?P<seq>\d+) batch (?P<batch>\d+) gc (?P<gc>on|off)$")
_SETUP = re.compile(r"^(?P<opt>[\w.-]+)(?:; LoRA r(?P<rank>\d+) alpha (?P<alpha>\d+) dropout (?P<dropout>[\d.]+): "
                    r"(?P<targets>[\w. ]+)|(?P<pure>; pure bf16))?$")


class MeasurementError(AdvisorError):
    """A measurement table that cannot be read."""


@dataclass(frozen=True)
class Measured:
    """One real training's setup and what torch.cuda reported for it (GiB)."""

    model: str
    peft: str
    seq_len: int
    micro_batch: int
    gradient_checkpointing: bool
    tied: bool  # the output embedding shares the input embedding's weight, as built
    optimizer: str
    lora_rank: int = 0
    lora_alpha: int = 0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ()
    pure_bf16: bool = False  # full fine-tuning with bf16 weights and states (no fp32 master copy)
    allocated_gb: float = 0.0
    reserved_gb: float = 0.0
    context_gb: float = 0.0

    @property
    def case(self) -> str:
        return (f"{self.model} {self.peft} seq {self.seq_len} batch {self.micro_batch} "
                f"gc {'on' if self.gradient_checkpointing else 'off'}")

    @property
    def setup(self) -> str:
        if self.peft == "full":
            return self.optimizer + ("; pure bf16" if self.pure_bf16 else "")
        return (f"{self.optimizer}; LoRA r{self.lora_rank} alpha {self.lora_alpha} dropout {self.lora_dropout:g}: "
                + " ".join(self.lora_targets))

    def params(self) -> dict[str, Any]:
        """The parameter values the estimate reads, as the measured run used them."""
        out: dict[str, Any] = {"micro_batch_size": self.micro_batch, "max_seq_length": self.seq_len,
                               "gradient_checkpointing": self.gradient_checkpointing, "optimizer": self.optimizer,
                               "pure_bf16": self.pure_bf16, "gradient_accumulation_steps": 1}  # one micro-batch a step
        if self.peft != "full":
            out.update(lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                       lora_target_modules=list(self.lora_targets))
        return out


def job_for(book: Rulebook, m: Measured) -> JobFacts:
    """The job as measured: one GPU, and the embeddings tied or not as the run built them."""
    from advisor.facts.job import job_facts

    job = job_facts(book, model=m.model, method="sft", peft=m.peft, detect_gpu=False, seq_len=m.seq_len)
    job = replace(job, gpu=replace(job.gpu, count=1))
    if job.model.tie_word_embeddings != m.tied:
        job = replace(job, model=replace(job.model, tie_word_embeddings=m.tied))
    return job


def predict(book: Rulebook, m: Measured) -> Estimate:
    return estimate(book, job_for(book, m), m.params())


def row(m: Measured, est: Estimate) -> str:
    """One table row in COLUMNS order."""
    return (f"| {m.case} | {'tied' if m.tied else 'untied'} | {m.setup} | {m.allocated_gb:.2f} | "
            f"{est.allocated_gb:.2f} | {est.allocated_gb / m.allocated_gb:.2f} | {m.reserved_gb:.2f} | "
            f"{est.reserved_gb:.2f} | {est.reserved_gb / m.reserved_gb:.2f} | "
            f"{m.reserved_gb / m.allocated_gb:.2f} | {m.context_gb:.2f} |")


def table(rows: list[tuple[Measured, Estimate]]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "| --- | --- | --- |" + " ---: |" * (len(COLUMNS) - 3)]
    return lines + [row(m, est) for m, est in rows]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _data_rows(text: str) -> list[tuple[int, int, dict[str, str]]]:
    """(line index, table number, cells by column) for every row of every measurement table."""
    out: list[tuple[int, int, dict[str, str]]] = []
    header: list[str] | None = None
    tables = 0
    for i, line in enumerate(text.splitlines()):
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if tuple(cells[:len(HEADER)]) == HEADER:
            header, tables = cells, tables + 1
        elif header is not None and not set(line) <= set("|-: "):
            if len(cells) != len(header):
                raise MeasurementError(f"line {i + 1}: {len(cells)} cells under a header of {len(header)}")
            out.append((i, tables - 1, dict(zip(header, cells, strict=True))))
    return out


def parse(text: str, where: str) -> list[list[Measured]]:
    """Every measurement table in ``text``, in order, each a list of rows."""
    tables: list[list[Measured]] = []
    for i, t, cells in _data_rows(text):
        tables.extend([] for _ in range(t + 1 - len(tables)))
        tables[t].append(_measured(cells, f"{where} line {i + 1}"))
    return tables


def rescore(book: Rulebook, text: str, where: str) -> str:
    """``text`` with every measurement row's prediction columns recomputed by the current rules (the
    measured columns are kept as they are)."""
    lines = text.splitlines()
    for i, _, cells in _data_rows(text):
        m = _measured(cells, f"{where} line {i + 1}")
        lines[i] = row(m, predict(book, m))
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def _measured(cells: dict[str, str], where: str) -> Measured:
    case, setup = _CASE.match(cells.get("case", "")), _SETUP.match(cells.get("setup", ""))
    if case is None or setup is None or cells.get("lm_head") not in ("tied", "untied"):
        raise MeasurementError(f"{where}: cannot read case {cells.get('case')!r} / lm_head {cells.get('lm_head')!r} "
                               f"/ setup {cells.get('setup')!r}", hint="see advisor/memory/measured.py for the format")
    try:
        numbers = {k: float(cells[k]) for k in ("max_memory_allocated", "max_memory_reserved", "CUDA context")}
    except (KeyError, ValueError) as exc:
        raise MeasurementError(f"{where}: a measured column is missing or not a number ({exc})") from exc
    adapter = setup["rank"] is not None
    return Measured(
        model=case["model"], peft=case["peft"], seq_len=int(case["seq"]), micro_batch=int(case["batch"]),
        gradient_checkpointing=case["gc"] == "on", tied=cells["lm_head"] == "tied", optimizer=setup["opt"],
        lora_rank=int(setup["rank"]) if adapter else 0, lora_alpha=int(setup["alpha"]) if adapter else 0,
        lora_dropout=float(setup["dropout"]) if adapter else 0.0,
        lora_targets=tuple(setup["targets"].split()) if adapter else (),
        pure_bf16=setup["pure"] is not None and case["peft"] == "full",
        allocated_gb=numbers["max_memory_allocated"], reserved_gb=numbers["max_memory_reserved"],
        context_gb=numbers["CUDA context"],
    )
