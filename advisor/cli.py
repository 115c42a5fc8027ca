"""The command line. Thin on purpose: parse, call, render.

Exit codes (documented in the README): 0 success; 1 findings at or above --fail-on (validate);
2 bad input, usage or internal error; 3 the probe could not run (probe).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from advisor import __version__
from advisor.errors import AdvisorError

app = typer.Typer(
    name="advisor",
    help="Rule-based hyperparameter advisor for LLM fine-tuning (LoRA / QLoRA / full; SFT, DPO, GRPO, PPO, RAFT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
rules_app = typer.Typer(help="List, explain and check rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")

FORMATS = ("text", "json", "yaml")
ModelOpt = typer.Option(
    ..., "--model", "-m", help="Registry alias (advisor models), hub id, or a config.json / model dir.")
MethodOpt = typer.Option(..., "--method", help="sft | dpo | grpo | ppo | raft")
PeftOpt = typer.Option("lora", "--peft", help="lora | qlora | full")
GpuOpt = typer.Option(None, "--gpu", help="GPU name from the registry (advisor gpus).")
GpusOpt = typer.Option(None, "--gpus", help="Number of GPUs (default 1).")
GPU_MEM_HELP = "One GPU's memory in GiB, as nvidia-smi's memory.total / 1024 (an 80 GB H100: 79.6)"
RulesOpt = typer.Option([], "--rules", help="A directory of your own rule files, layered over the built-in ones "
                                            "(same id replaces). Repeatable.")


def _console() -> Console:
    # A terminal (or an explicit COLUMNS) sets the width; a pipe gets a wide table, not a wrapped one.
    return Console(soft_wrap=False, width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)


def _book(rule_dirs: list[Path]) -> Any:
    from advisor.rulebook import load_rulebook

    return load_rulebook(rule_dirs)


def _check_format(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt not in allowed:
        raise AdvisorError(f"--format: unknown format {fmt!r}", hint=f"one of {', '.join(allowed)}")


def _parse_set(items: list[str], book: Any) -> dict[str, Any]:
    import yaml

    pins: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AdvisorError(f"--set {item!r}: expected KEY=VALUE", hint="e.g. --set lora_rank=64")
        if key not in book.parameters:
            raise AdvisorError(f"--set {item!r}: unknown parameter {key!r}",
                               hint="`advisor rules list` shows the parameters rules set")
        try:
            pins[key] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise AdvisorError(f"--set {item!r}: value is not a number, word or [list]") from exc
        problem = book.parameters[key].problem(pins[key])
        if problem is not None:
            raise AdvisorError(f"--set {item!r}: {problem}")
    return pins


def _emit(text: str, output: Optional[Path]) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    from advisor.output import write_atomic

    write_atomic(output, text)


@app.command(
    epilog="Examples:\n\n"
    "  advisor recommend --model llama-8b --method grpo\n\n"
    "  advisor recommend --model qwen2.5-7b --method sft --peft qlora --gpu rtx-4090 --dataset-size 20k\n\n"
    "  advisor recommend --model ./my-model/config.json --method dpo --situation safety --format yaml\n\n"
    "  advisor recommend --model llama-8b --method raft --cycles 8 --dataset-size 500 --explain",
)
def recommend(
    model: str = ModelOpt,
    method: str = MethodOpt,
    peft: str = PeftOpt,
    gpu: Optional[str] = GpuOpt,
    gpu_mem: Optional[float] = typer.Option(None, "--gpu-mem", help=GPU_MEM_HELP + "; instead of or with --gpu."),
    gpus: Optional[int] = GpusOpt,
    dataset_size: Optional[str] = typer.Option(
        None, "--dataset-size",
        help="Training examples, e.g. 20000 or 20k (prompts for GRPO/PPO, samples per cycle for RAFT)."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Pin the maximum sequence length (tokens)."),
    cycles: Optional[int] = typer.Option(None, "--cycles", help="RAFT cycles: adds the per-cycle LR schedule."),
    use_case: str = typer.Option("chat", "--use-case", help="short-qa | chat | long-documents | code"),
    situation: Optional[str] = typer.Option(
        None, "--situation", help="DPO: new-domain | safety | strong-baseline | weak-baseline (default: beta's standard row)."),
    sft_lr: Optional[float] = typer.Option(None, "--sft-lr", help="RAFT: the LR your SFT stage used (RAFT starts at a quarter)."),
    variant: Optional[str] = typer.Option(
        None, "--variant", help="The method's loss variant (rules/variants.yaml): ipo, ldpo, simpo, orpo, kto (DPO); "
                                "dr_grpo, dapo, gspo (GRPO); rloo, rlvr (PPO)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Pin a parameter: --set lora_rank=64 (repeatable). The LR follows the batch and steps."),
    rules: list[Path] = RulesOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text | json | yaml"),
    explain: bool = typer.Option(False, "--explain", help="Print every value's trace: rules, rows, formulas, sources, notes."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file (atomically) instead of stdout."),
    no_detect: bool = typer.Option(False, "--no-detect", help="Do not ask nvidia-smi when no --gpu / --gpu-mem is given."),
) -> None:
    """Recommend a fine-tuning config; every value names the rule and source that set it."""
    from advisor import api
    from advisor.facts.task import parse_count

    _check_format(fmt, FORMATS)
    book = _book(rules)
    rec = api.recommend(
        book=book, pins=_parse_set(set_, book), model=model, method=method, peft=peft, gpu=gpu, gpu_mem=gpu_mem,
        gpus=gpus, dataset_size=parse_count(dataset_size, "--dataset-size") if dataset_size is not None else None,
        seq_len=seq_len, cycles=cycles, use_case=use_case, situation=situation, sft_lr=sft_lr, variant=variant,
        detect_gpu=not no_detect,
    )

    if fmt == "json":
        from advisor.render.data import to_json

        _emit(to_json(rec), output)
    elif fmt == "yaml":
        from advisor.render.data import to_yaml

        _emit(to_yaml(rec), output)
    elif output is not None:
        import io

        from advisor.render.text import render_recommendation

        console = Console(record=True, width=200, file=io.StringIO())
        render_recommendation(rec, console, explain=explain)
        _emit(console.export_text(), output)
    else:
        from advisor.render.text import render_recommendation

        render_recommendation(rec, _console(), explain=explain)


VALIDATE_FORMATS = ("text", "json", "sarif", "github")
FAIL_ON = ("error", "warning", "info", "never")


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def _codes(items: list[str]) -> list[str]:
    return [c.strip().upper() for item in items for c in item.split(",") if c.strip()]


@app.command(
    epilog="Examples:\n\n"
    "  advisor validate train.yaml\n\n"
    "  advisor validate configs/*.yaml --gpu rtx-4090 --format sarif -o advisor.sarif\n\n"
    "  advisor validate axolotl.yml --select VLR,VLO --fail-on warning\n\n"
    "  advisor validate sft.yaml --fix sft.fixed.yaml\n\n"
    "Silence one finding with a comment on its line: `lora_r: 256  # advisor: ignore[VLO002]`.",
)
def validate(
    configs: list[Path] = typer.Argument(
        ..., help="Config files: advisor, Axolotl, LLaMA-Factory, TRL / HF (YAML or JSON), trainer_state.json."),
    config_format: Optional[str] = typer.Option(
        None, "--config-format", help="Force the reader: advisor | axolotl | llama-factory | trl | trainer-state."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="The model, when the config does not name one the registry knows."),
    method: Optional[str] = typer.Option(None, "--method", help="sft | dpo | grpo | ppo | raft (overrides the config)."),
    peft: Optional[str] = typer.Option(None, "--peft", help="lora | qlora | full (overrides the config)."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU name (advisor gpus)."),
    gpu_mem: Optional[float] = typer.Option(None, "--gpu-mem", help=GPU_MEM_HELP + "."),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="Number of GPUs."),
    cycles: Optional[int] = typer.Option(None, "--cycles", help="RAFT: cycles the config is used for."),
    fmt: str = typer.Option("text", "--format", "-f", help="text | json | sarif | github"),
    fail_on: Optional[str] = typer.Option(
        None, "--fail-on", help="Exit 1 on findings at or above: error (default) | warning | info | never."),
    select: list[str] = typer.Option([], "--select", help="Only these codes or code prefixes (e.g. VLR,VTM003)."),
    ignore: list[str] = typer.Option([], "--ignore", help="Skip these codes or prefixes."),
    fix: Optional[Path] = typer.Option(None, "--fix", help="Write a corrected config (same format) to this file."),
    rules: list[Path] = RulesOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report to this file (atomically)."),
    no_detect: bool = typer.Option(False, "--no-detect", help="Do not ask nvidia-smi for the GPU."),
) -> int:
    """Lint existing training configs against the rulebook: rule codes, severities and fixes."""
    from advisor.facts.hardware import resolve_gpu
    from advisor.validate import Overrides, Selection, exit_code, load_project_settings, validate_file

    _check_format(fmt, VALIDATE_FORMATS)
    if fix is not None and len(configs) != 1:
        raise AdvisorError("--fix: give exactly one config to fix", hint=f"got {len(configs)}")
    project = load_project_settings(Path.cwd())
    fail_on = fail_on or str(project.get("fail-on", project.get("fail_on", "error")))
    if fail_on not in FAIL_ON:
        raise AdvisorError(f"--fail-on: unknown level {fail_on!r}", hint=f"one of {', '.join(FAIL_ON)}")
    selection = Selection(select=_codes(select or _as_list(project.get("select"))),
                          ignore=_codes([*_as_list(project.get("ignore")), *ignore]))
    book = _book(rules)
    from advisor.facts.task import METHODS, PEFTS

    method, peft = (v.strip().lower() if v is not None else None for v in (method, peft))  # as recommend reads them
    if method is not None and method not in METHODS:
        raise AdvisorError(f"--method: unknown value {method!r}", hint=f"one of {', '.join(METHODS)}")
    if peft is not None and peft not in PEFTS:
        raise AdvisorError(f"--peft: unknown value {peft!r}", hint=f"one of {', '.join(PEFTS)}")
    from advisor.configs.readers import check_config_format

    check_config_format(config_format)
    over = Overrides(model=model, method=method, peft=peft, cycles=cycles, config_format=config_format)
    hw = resolve_gpu(book, name=gpu, memory_gb=gpu_mem, count=gpus, detect=not no_detect)
    reports = [validate_file(path, book, hw, over, selection) for path in configs]

    from advisor.render import findings as render

    if fmt == "json":
        _emit(render.to_json(reports), output)
    elif fmt == "sarif":
        _emit(render.to_sarif(reports, book), output)
    elif fmt == "github":
        _emit(render.to_github(reports), output)
    elif output is not None:
        import io

        console = Console(record=True, width=200, file=io.StringIO())
        render.render_text(reports, console)
        _emit(console.export_text(), output)
    else:
        render.render_text(reports, _console())
    if fix is not None and reports[0].config is not None:
        _write_fix(book, reports[0], fix)
    return exit_code(reports, fail_on)


def _write_fix(book: Any, report: Any, target: Path) -> None:
    from advisor.configs.fix import apply_fixes, fixable
    from advisor.output import write_atomic
    from advisor.validate import default_keys, own_keys

    cfg, doc = report.config, report.document
    fixes = fixable(report.findings, cfg, own_keys(book, cfg.format))
    write_atomic(target, apply_fixes(doc, cfg, fixes, default_keys(book, cfg.format)))
    sys.stderr.write(f"advisor: wrote {target} with {len(fixes)} fix(es)\n")


@app.command(
    epilog="Examples:\n\n"
    "  advisor schedule --cycles 8\n\n"
    "  advisor schedule --compare --cycles 5\n\n"
    "  advisor schedule --base-lr 5e-5 --decay 0.85 --yaml\n\n"
    "  advisor schedule --strategy manual --schedule cycle_1=5e-5,cycle_2=4e-5,cycle_3=3e-5 --plot lr.png\n\n"
    "  advisor schedule --samples 500 --micro-batch 2 --accumulation 16 --recommendations",
)
def schedule(
    strategy: str = typer.Option("exponential", "--strategy", help="constant | exponential | manual"),
    cycles: Optional[int] = typer.Option(None, "--cycles", help="Number of cycles (default 5)."),
    base_lr: Optional[float] = typer.Option(None, "--base-lr", help="Cycle-1 LR (default from the rulebook: SFT LR / 4)."),
    decay: Optional[float] = typer.Option(None, "--decay", help="Per-cycle factor (--compare shows the rulebook's presets)."),
    manual: Optional[str] = typer.Option(None, "--schedule", help="Manual LRs: cycle_1=5e-5,cycle_2=4e-5,..."),
    peft: str = typer.Option("lora", "--peft", help="lora | qlora | full"),
    sft_lr: Optional[float] = typer.Option(None, "--sft-lr", help="Your SFT LR: the RAFT base is a quarter of it."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Filtered samples per cycle (for steps per cycle)."),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch", help="Per-device batch."),
    accumulation: Optional[int] = typer.Option(None, "--accumulation", help="Gradient accumulation steps."),
    do_compare: bool = typer.Option(False, "--compare", help="The seeds' decay-factor comparison table."),
    do_yaml: bool = typer.Option(False, "--yaml", help="The config snippet, as the seeds write it."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG plot here (needs llm-finetune-advisor[plot])."),
    recommendations: bool = typer.Option(False, "--recommendations", help="The seeds' advice and decision tree, from the rules."),
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
    rules: list[Path] = RulesOpt,
) -> None:
    """Per-cycle learning rates for RAFT-style iterative training, from the rulebook."""
    import json

    from advisor import schedule as sched
    from advisor.output import fmt_number
    from advisor.render.plot import png_lines, terminal_bars

    _check_format(fmt, ("text", "json"))
    book = _book(rules)
    plan = sched.build(book, strategy=strategy, cycles=cycles, base_lr=base_lr, decay=decay, manual=manual,
                       peft=peft, sft_lr=sft_lr, samples=samples, micro_batch=micro_batch, accumulation=accumulation)
    rows = sched.compare(book, cycles=plan.cycles, base_lr=plan.base_lr, peft=peft, sft_lr=sft_lr) if do_compare else []
    if do_yaml:
        sys.stdout.write(sched.to_yaml(plan))
    elif fmt == "json":
        out = sched.to_dict(plan)
        if do_compare:
            out["compare"] = rows
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        console = _console()
        if do_compare:
            table = Table(box=None, header_style="bold", pad_edge=False,
                          title=f"Base LR {fmt_number(plan.base_lr)} across {plan.cycles} cycles", title_justify="left")
            table.add_column("decay factor")
            for i in range(1, plan.cycles + 1):
                table.add_column(f"cycle {i}", justify="right")
            for row in rows:
                name = "constant" if row["factor"] == 1.0 else f"{row['factor']:.2f} ({row['label']})"
                table.add_row(name, *(sched.compare_cell(v) for v in row["lrs"]))
            console.print(table)
        else:
            who = ", ".join(f"{k} from {v}" for k, v in plan.sources.items())
            console.print(f"{plan.strategy} schedule, {plan.cycles} cycles ({who})", highlight=False, markup=False)
            console.print(terminal_bars(plan.lrs), highlight=False, markup=False, end="")
        if plan.steps_per_cycle is not None:
            console.print(f"optimizer steps per cycle: {plan.steps_per_cycle} "
                          f"({samples} samples / {micro_batch or 1} micro-batch / {accumulation or 1} accumulation)",
                          highlight=False, markup=False)
        for name, item in plan.within_cycle.items():
            value = fmt_number(item["value"]) if isinstance(item["value"], float) else item["value"]
            console.print(f"within each cycle: {name} = {value} ({item['rule']})", highlight=False, markup=False)
    if recommendations:
        _print_recommendations(book, plan)
    if plot is not None:
        series = {f"decay {fmt_number(r['factor'])}": r["lrs"] for r in rows} if do_compare else {plan.strategy: plan.lrs}
        png_lines(plot, series, title="Learning rate per cycle", xlabel="cycle", ylabel="learning rate")
        sys.stderr.write(f"advisor: wrote {plot}\n")


def _print_recommendations(book: Any, plan: Any) -> None:
    from advisor.output import fmt_number
    from advisor.schedule import resolve_raft

    rec = resolve_raft(book, cycles=plan.cycles)
    lr, decay = rec.parameters["learning_rate"], rec.parameters["lr_decay_factor"]
    console = _console()
    console.print("Starting point (experimental: the sources call these hypotheses):", highlight=False, markup=False)
    console.print(f"  RAFT cycle 1 LR {fmt_number(lr.number())}, decay {fmt_number(decay.number())} per cycle "
                  f"[{lr.rule}, {decay.rule}; confidence {lr.confidence} / {decay.confidence}]", highlight=False, markup=False)
    signals = sorted((r for r in book.rules.values() if r.kind == "signal"), key=lambda r: r.code)
    for direction in ("LR too high", "LR too low"):
        console.print(f"If you see ({direction}):", highlight=False, markup=False)
        for r in signals:
            if r.summary.startswith(direction):
                console.print(f"  - {r.sign}: {r.advice} [{r.code}]", highlight=False, markup=False)
    for note in book.rules["opt-scheduler-raft"].notes:
        console.print(f"Within a cycle: {note['text']}", highlight=False, markup=False)


@app.command(
    epilog="Examples:\n\n"
    "  advisor diagnose out/checkpoint-500/trainer_state.json\n\n"
    "  advisor diagnose runs/  (a TensorBoard log directory)\n\n"
    "  advisor diagnose --cycles-dir raft/ --samples raft/cycle_8/samples.jsonl --plot curves.png\n\n"
    "  advisor diagnose train_log.csv --max-grad-norm 0.3 --format json",
)
def diagnose(
    log: Optional[Path] = typer.Argument(None, help="trainer_state.json, a .jsonl / .csv log, or a TensorBoard directory."),
    cycles_dir: Optional[Path] = typer.Option(None, "--cycles-dir", help="A directory of RAFT cycle runs, one log per cycle."),
    samples: Optional[Path] = typer.Option(None, "--samples", help="Generated samples (.jsonl with text, or one per line)."),
    max_grad_norm: Optional[float] = typer.Option(
        None, "--max-grad-norm", help="The run's clipping threshold (default: the rulebook's)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
    fail_on: str = typer.Option("warning", "--fail-on", help="Exit 1 on signs at or above: warning (default) | error | never."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the loss and gradient-norm curves here (PNG)."),
    rules: list[Path] = RulesOpt,
) -> int:
    """Read training logs and report the seeds' warning signs, with the decision tree's advice."""
    import json

    from advisor.diagnose import judge, log_facts, unjudged_lines
    from advisor.telemetry import distinct_n, read_cycles, read_log, read_samples

    _check_format(fmt, ("text", "json"))
    if fail_on not in ("warning", "error", "never"):
        raise AdvisorError(f"--fail-on: unknown level {fail_on!r}", hint="one of warning, error, never")
    if (log is None) == (cycles_dir is None):
        raise AdvisorError("give a log file or directory, or --cycles-dir (one of them)")
    book = _book(rules)
    tel = read_cycles(cycles_dir) if cycles_dir is not None else read_log(log)  # type: ignore[arg-type]
    if max_grad_norm is None:
        from advisor.rulebook.resolve import recommend

        max_grad_norm = recommend(book, {}, {}, {}).parameters["max_grad_norm"].number()
    d2 = distinct_n(read_samples(samples)) if samples is not None else None
    signs, unjudged = judge(book, log_facts(tel, max_grad_norm=float(max_grad_norm), distinct_2=d2))
    counts = {k: len(v) for k, v in tel.series.items()}
    if fmt == "json":
        sys.stdout.write(json.dumps({"source": tel.source, "reader": tel.reader, "points": counts,
                                     "cycles": tel.cycles, "cycle_metric": tel.cycle_metric,
                                     "cycle_scores": tel.cycle_scores, "signs": [s.as_dict() for s in signs],
                                     "not_judged": [u.as_dict() for u in unjudged]}, indent=2) + "\n")
    else:
        console = _console()
        what = ", ".join(f"{n} {k}" for k, n in counts.items())
        console.print(f"{tel.source} ({tel.reader}): {what}" + (f"; {len(tel.cycles)} cycles" if tel.cycles else ""),
                      highlight=False, markup=False)
        if not signs:
            console.print("no warning signs", highlight=False, markup=False)
        for s in signs:
            console.print(f"{s.code} {s.severity}: {s.summary}", highlight=False, markup=False)
            console.print(f"    measured: {s.evidence}", highlight=False, markup=False)
            console.print(f"    advice: {s.advice} ({s.rule}, confidence {s.confidence})", highlight=False, markup=False)
        for line in unjudged_lines(unjudged):
            console.print(line, highlight=False, markup=False)
    if plot is not None:
        from advisor.render.plot import png_lines

        curves = {k: tel.series[k] for k in ("loss", "grad_norm", "eval_loss") if tel.series.get(k)}
        marks: dict[str, list[tuple[str, list[int]]]] = {}
        for s in signs:
            if s.marks is not None:
                marks.setdefault(s.marks[0], []).append((s.code, list(s.marks[1])))
        png_lines(plot, curves, title=f"{tel.source}: " + (", ".join(s.code for s in signs) or "no warning signs"),
                  xlabel="logged point", ylabel="value", marks=marks)
        sys.stderr.write(f"advisor: wrote {plot}\n")
    if fail_on == "never":
        return 0
    levels = ("warning", "error")
    return 1 if any(levels.index(s.severity) >= levels.index(fail_on) for s in signs if s.severity in levels) else 0


# Options `advisor probe` and `advisor sweep` share: what to probe and how.
ProbeConfigArg = typer.Argument(
    None, help="A config advisor validate reads (advisor, Axolotl, LLaMA-Factory, TRL / HF). Or use --model/--method.")
ProbeModelOpt = typer.Option(
    None, "--model", "-m", help="Registry alias, hub id, model directory, or config.json (with --random-init).")
ProbeMethodOpt = typer.Option(None, "--method", help="sft | dpo | grpo | ppo | raft (overrides the config).")
ProbePeftOpt = typer.Option(None, "--peft", help="lora | qlora | full (overrides the config).")
ProbeGpuOpt = typer.Option(None, "--gpu", help="GPU name (advisor gpus), for the recommendation's facts.")
ProbeGpuMemOpt = typer.Option(None, "--gpu-mem", help=GPU_MEM_HELP + ".")
RandomInitOpt = typer.Option(False, "--random-init", help="Build the model from its config with random weights.")
DataOpt = typer.Option(
    None, "--data", help="JSONL (text | prompt/completion | messages | prompt/chosen/rejected) or a datasets "
                         "directory. Default: the built-in corpus.")
NoPackingOpt = typer.Option(False, "--no-packing", help="Pad each example to the sequence length instead of packing.")
ProbeSeqLenOpt = typer.Option(None, "--seq-len", help="Cap the sequence length (tokens).")
MicroBatchOpt = typer.Option(None, "--micro-batch", help="Override the micro-batch.")
AccumulationOpt = typer.Option(None, "--accumulation", help="Override the gradient accumulation steps.")
SeedOpt = typer.Option(0, "--seed", help="Seed for data order and adapter initialisation.")
MaxMemoryOpt = typer.Option(
    None, "--max-memory", help="Memory cap in GiB (CUDA: the allocator's limit; CPU: peak RSS per step).")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda")
SetOpt = typer.Option([], "--set", help="Pin a parameter for the recommendation: --set lora_rank=64.")
ConfigFormatOpt = typer.Option(None, "--config-format", help="Force the config reader.")
NoDetectOpt = typer.Option(False, "--no-detect", help="Do not ask nvidia-smi for the GPU.")


def _plan_inputs(book: Any, *, config: Optional[Path], config_format: Optional[str], model: Optional[str],
                 method: Optional[str], peft: Optional[str], gpu: Optional[str], gpu_mem: Optional[float],
                 no_detect: bool, random_init: bool, data: Optional[Path], no_packing: bool, seq_len: Optional[int],
                 micro_batch: Optional[int], accumulation: Optional[int], max_memory: Optional[float], device: str,
                 set_: list[str]) -> dict[str, Any]:
    """What `probe` and `sweep` both plan from: build_plan's keywords."""
    if config is None and (model is None or method is None):
        raise AdvisorError("give a CONFIG, or --model and --method", hint="advisor probe --help")
    if config is not None and not config.is_file():
        raise AdvisorError(f"{config}: no such file")
    return {"config": config, "config_format": config_format, "model": model,
            "method": method, "peft": peft, "gpu": gpu, "gpu_mem": gpu_mem, "detect_gpu": not no_detect,
            "random_init": random_init, "data": data, "packing": not no_packing,
            "seq_len": seq_len, "micro_batch": micro_batch, "accumulation": accumulation, "max_memory_gb": max_memory,
            "device": device, "pins": _parse_set(set_, book)}


@app.command(
    epilog="Examples:\n\n"
    "  advisor probe axolotl.yml\n\n"
    "  advisor probe --model llama-3.2-1b --method sft --peft qlora --random-init --gpu h100\n\n"
    "  advisor probe --model ./tiny/config.json --method sft --peft qlora --random-init --seq-len 64 --steps 30\n\n"
    "  advisor probe train.yaml --data my.jsonl --max-memory 20 --out probe-out\n\n"
    "Exit codes: 0 pass (warnings printed), 1 fail verdict, 2 bad input, 3 the probe could not run, 130 interrupted.",
)
def probe(
    config: Optional[Path] = ProbeConfigArg,
    model: Optional[str] = ProbeModelOpt,
    method: Optional[str] = ProbeMethodOpt,
    peft: Optional[str] = ProbePeftOpt,
    gpu: Optional[str] = ProbeGpuOpt,
    gpu_mem: Optional[float] = ProbeGpuMemOpt,
    random_init: bool = RandomInitOpt,
    data: Optional[Path] = DataOpt,
    no_packing: bool = NoPackingOpt,
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Optimizer steps to run (default: through the full run's warmup and 30 steps beyond; 30 "
                              "when it has no warmup)."),
    seq_len: Optional[int] = ProbeSeqLenOpt,
    micro_batch: Optional[int] = MicroBatchOpt,
    accumulation: Optional[int] = AccumulationOpt,
    lr: Optional[float] = typer.Option(None, "--lr", help="Override the learning rate."),
    seed: int = SeedOpt,
    max_memory: Optional[float] = MaxMemoryOpt,
    device: str = DeviceOpt,
    eval_every: int = typer.Option(0, "--eval-every", help="Also evaluate every N steps (start and end always)."),
    dataset_size: Optional[str] = typer.Option(
        None, "--dataset-size", help="Training examples of the full run (projects its time from epochs)."),
    out: Path = typer.Option(Path("probe-out"), "--out", "-o", help="Directory for probe-report.json, probe-summary.md, "
                                                                    "probe-curves.png."),
    save_adapter: Optional[Path] = typer.Option(
        None, "--save-adapter", help="Save the trained adapter here (else no weights are written)."),
    fail_on: str = typer.Option("error", "--fail-on", help="Exit 1 on signs at or above: error (default) | warning | never."),
    set_: list[str] = SetOpt,
    config_format: Optional[str] = ConfigFormatOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text | json (the report on stdout)"),
    no_live: bool = typer.Option(False, "--no-live", help="No live progress view."),
    no_detect: bool = NoDetectOpt,
    rules: list[Path] = RulesOpt,
) -> int:
    """Train a short real probe run (QLoRA / LoRA / full) and judge it by the signal rules."""
    import json

    from advisor.facts.task import parse_count
    from advisor.probe.plan import build_plan

    _check_format(fmt, ("text", "json"))
    if fail_on not in ("error", "warning", "never"):
        raise AdvisorError(f"--fail-on: unknown level {fail_on!r}", hint="one of error, warning, never")
    book = _book(rules)
    inputs = _plan_inputs(book, config=config, config_format=config_format, model=model, method=method, peft=peft,
                          gpu=gpu, gpu_mem=gpu_mem, no_detect=no_detect, random_init=random_init, data=data,
                          no_packing=no_packing, seq_len=seq_len, micro_batch=micro_batch, accumulation=accumulation,
                          max_memory=max_memory, device=device, set_=set_)
    plan = build_plan(
        book, **inputs, steps=steps, learning_rate=lr, seed=seed,
        dataset_size=parse_count(dataset_size, "--dataset-size") if dataset_size is not None else None,
    )
    if save_adapter is not None and plan.peft == "full":
        raise AdvisorError("--save-adapter: full fine-tuning trains no adapter", hint="use --peft lora or qlora")
    if eval_every < 0:
        raise AdvisorError(f"--eval-every: {eval_every} must be 0 or more")
    from advisor.probe.live import LiveView
    from advisor.probe.loop import run_probe
    from advisor.probe.report import headline, make_report, short_probe_warning, verdict_lines, write_outputs

    warning = short_probe_warning(book, plan)
    if warning is not None:
        sys.stderr.write(f"advisor: warning: {warning}\n")
    from advisor.probe.result import ProbeInterrupted

    with LiveView(plan.steps, enabled=not no_live and fmt == "text") as view:
        try:
            result = run_probe(plan, on_step=view.on_step, on_eval=view.on_eval, eval_every=eval_every,
                               save_adapter=str(save_adapter) if save_adapter is not None else None)
        except ProbeInterrupted as stop:
            result = stop.result
    report = make_report(book, plan, result, fail_on)
    written = write_outputs(report, out)
    if fmt == "json":
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        console = _console()
        for line in [*headline(report), *verdict_lines(report)]:
            console.print(line, highlight=False, markup=False)
        console.print("wrote " + ", ".join(str(p) for p in written.values()), highlight=False, markup=False)
    return int(report.exit_code)


def _stored(inputs: dict[str, Any]) -> dict[str, Any]:
    """Plan inputs as a sweep stores them (JSON), files as absolute paths: workers may run elsewhere."""
    out = {k: str(v.resolve()) if isinstance(v, Path) else v for k, v in inputs.items()}
    model = out.get("model")
    if model is not None and Path(model).expanduser().exists():
        out["model"] = str(Path(model).expanduser().resolve())
    return out


def _parse_lrs(lrs: Optional[str], lr_range: Optional[str], points: Optional[int]) -> Optional[list[float]]:
    """--lrs 1e-5,2e-4 or --lr-range 1e-5:1e-2 [--points N] -> learning rates (None: neither given)."""
    import math

    from advisor.sweep.analysis import log_space

    def number(text: str, flag: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise AdvisorError(f"{flag}: {text!r} is not a number", hint="e.g. 2e-4") from None
        if not (math.isfinite(value) and 0 < value < 10):
            raise AdvisorError(f"{flag}: {text!r} is not a learning rate", hint="e.g. 2e-4")
        return value

    if lrs is not None and lr_range is not None:
        raise AdvisorError("give --lrs or --lr-range, not both")
    if lrs is not None:
        values = [number(x.strip(), "--lrs") for x in lrs.split(",") if x.strip()]
        if not values:
            raise AdvisorError("--lrs: no learning rates given", hint="e.g. --lrs 1e-5,2e-4,1e-3,5e-3")
        return values
    if lr_range is not None:
        lo_text, sep, hi_text = lr_range.partition(":")
        if not sep:
            raise AdvisorError(f"--lr-range: {lr_range!r} is not LO:HI", hint="e.g. --lr-range 1e-5:1e-2")
        lo, hi = number(lo_text, "--lr-range"), number(hi_text, "--lr-range")
        if lo >= hi:
            raise AdvisorError(f"--lr-range: {lr_range!r}: LO must be below HI")
        if points is None:
            raise AdvisorError("--lr-range needs --points", hint="e.g. --points 12")
        if points < 2:
            raise AdvisorError(f"--points: {points} must be at least 2")
        return log_space(lo, hi, points)
    return None


@app.command(
    epilog="Examples:\n\n"
    "  advisor sweep --model examples/tiny-llama/config.json --method sft --peft qlora --random-init "
    "--strategy grid --lrs 1e-5,2e-4,1e-3,5e-3\n\n"
    "  advisor sweep axolotl.yml --strategy halving --steps 120 -o sweep-out --write-rules ./my-rules\n\n"
    "  advisor sweep axolotl.yml --storage postgresql://me@db/sweeps --study llama-lr   (then on other machines:)\n\n"
    "  advisor sweep --worker --storage postgresql://me@db/sweeps --study llama-lr\n\n"
    "Exit codes: 0 an LR was found, 1 no run finished cleanly, 2 bad input, 3 the probe could not run.",
)
def sweep(
    config: Optional[Path] = ProbeConfigArg,
    model: Optional[str] = ProbeModelOpt,
    method: Optional[str] = ProbeMethodOpt,
    peft: Optional[str] = ProbePeftOpt,
    gpu: Optional[str] = ProbeGpuOpt,
    gpu_mem: Optional[float] = ProbeGpuMemOpt,
    random_init: bool = RandomInitOpt,
    data: Optional[Path] = DataOpt,
    no_packing: bool = NoPackingOpt,
    seq_len: Optional[int] = ProbeSeqLenOpt,
    micro_batch: Optional[int] = MicroBatchOpt,
    accumulation: Optional[int] = AccumulationOpt,
    seed: int = SeedOpt,
    max_memory: Optional[float] = MaxMemoryOpt,
    device: str = DeviceOpt,
    set_: list[str] = SetOpt,
    config_format: Optional[str] = ConfigFormatOpt,
    no_detect: bool = NoDetectOpt,
    strategy: str = typer.Option("halving", "--strategy", help="halving (default) | grid | range-test"),
    lrs: Optional[str] = typer.Option(None, "--lrs", help="grid: learning rates, e.g. 1e-5,2e-4,1e-3,5e-3"),
    lr_range: Optional[str] = typer.Option(None, "--lr-range", help="grid: a log range LO:HI (with --points)"),
    points: Optional[int] = typer.Option(None, "--points", help="grid: learning rates in --lr-range"),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps per run (default: rules/sweep.yaml, 80)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate every N steps (default 8)."),
    suggest: str = typer.Option(
        "minimum", "--suggest", help="range test suggestion: minimum (fastai's lr_min: a tenth of the LR at the loss "
                                     "minimum) | valley (fastai) | steepest (Lightning)"),
    out: Path = typer.Option(Path("sweep-out"), "--out", "-o", help="Directory for the report, plots and the journal."),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="optuna storage: an RDB URL (postgresql://, sqlite:///) or a journal file. "
                                "Default: a journal file in --out."),
    study: str = typer.Option("advisor-sweep", "--study", help="Study name in the storage."),
    worker: bool = typer.Option(False, "--worker", help="Join a sweep started elsewhere (--storage, --study)."),
    write_rules: Optional[Path] = typer.Option(
        None, "--write-rules", help="Write the best LR as a user rule in this directory (use it with --rules)."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the PNG plots."),
    fmt: str = typer.Option("text", "--format", "-f", help="text | json (the summary on stdout)"),
    rules: list[Path] = RulesOpt,
) -> int:
    """Find the learning rate: a grid, an LR range test, or successive halving over probe runs."""
    import json

    from advisor.sweep import runner

    _check_format(fmt, ("text", "json"))
    book = _book(rules)
    console = _console()

    def say(text: str) -> None:
        if fmt == "text":
            console.print(text, highlight=False, markup=False)

    def ended(run: Any) -> None:
        loss = "-" if run.eval_loss_end is None else f"{run.eval_loss_end:.4f}"
        say(f"  lr {run.lr:.3g}: {run.status}, {run.optimizer_steps} steps, final eval loss {loss}")

    events = runner.Events(message=say, trial_start=lambda n, lr: say(f"run {n}: lr {lr:.3g}"), trial_end=ended,
                           waiting=lambda n: say(f"waiting for {n} run(s) in other workers"))
    if worker:
        if storage is None:
            raise AdvisorError("--worker needs --storage", hint="the URL the sweep's first process was given")
        queue, ran = runner.run_worker(book, storage_url=storage, study_name=study, events=events)
        say(f"worker done: ran {ran} trial(s) of study {queue.name!r}")
        return 0
    inputs = _plan_inputs(book, config=config, config_format=config_format, model=model, method=method, peft=peft,
                          gpu=gpu, gpu_mem=gpu_mem, no_detect=no_detect, random_init=random_init, data=data,
                          no_packing=no_packing, seq_len=seq_len, micro_batch=micro_batch, accumulation=accumulation,
                          max_memory=max_memory, device=device, set_=set_)
    outcome = runner.start(
        book, out=out, storage_url=storage, study_name=study, strategy=strategy,
        lrs=_parse_lrs(lrs, lr_range, points), steps=steps, eval_every=eval_every, suggest=suggest, seed=seed,
        probe=_stored(inputs),
        events=events, plots=not no_plots, write_rules=write_rules,
    )
    found = outcome.report.best is not None or bool((outcome.report.range_test or {}).get("suggestion"))
    if fmt == "json":
        from advisor.sweep.report import summary_json

        sys.stdout.write(json.dumps(summary_json(outcome.report), indent=2) + "\n")
        return 0 if found else 1
    from advisor.sweep.report import render_text

    render_text(outcome.report, console)
    if outcome.rule_file is not None:
        say(f"wrote rule {outcome.rule_file} (use it with --rules {outcome.rule_file.parent})")
    say(f"wrote {len(outcome.written)} files in {out}: README.md, all_results.json, run_data.json and plots per run")
    return 0 if found else 1


@rules_app.command("list")
def rules_list(
    rules: list[Path] = RulesOpt,
    parameter: Optional[str] = typer.Option(None, "--parameter", "-p", help="Only rules that set this parameter."),
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
) -> None:
    """List every rule: code, id, kind, parameter, confidence, file."""
    import json

    _check_format(fmt, ("text", "json"))
    book = _book(rules)
    if parameter is not None and parameter not in book.parameters:
        raise AdvisorError(f"--parameter: unknown parameter {parameter!r}", hint="`advisor rules list` shows them all")
    selected = [r for r in book.rules.values() if parameter is None or r.parameter == parameter]
    if fmt == "json":
        sys.stdout.write(json.dumps([{"code": r.code, "id": r.id, "kind": r.kind, "stage": r.stage,
                                      "parameter": r.parameter, "summary": r.summary, "confidence": r.confidence,
                                      "file": str(r.file)} for r in selected], indent=2) + "\n")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("code", "id", "kind", "stage", "parameter", "summary"):
        table.add_column(col)
    for r in sorted(selected, key=lambda r: r.code):
        table.add_row(r.code, r.id, r.kind, r.stage, r.parameter, r.summary)
    _console().print(table)


@rules_app.command("show", epilog="Examples:\n\n  advisor rules show LR002\n\n  advisor rules show lora-rank-rl")
def rules_show(
    key: str = typer.Argument(..., help="A rule id (lora-rank-rl), a code (LORA002) or a coefficient id (sweep-steps)."),
    rules: list[Path] = RulesOpt,
) -> None:
    """Explain one rule: summary, why, rows, sources and notes."""
    from advisor.render.text import render_rule
    from advisor.suggest import closest

    book = _book(rules)
    rule = book.find(key)
    coefficients = {**book.memory.get("coefficients", {}), **book.coefficients}
    if rule is None and key in coefficients:
        from advisor.render.text import render_coefficient

        render_coefficient(coefficients[key], _console())
        return
    if rule is None:
        close = closest(key, [*book.rules, *(r.code for r in book.rules.values()), *coefficients], n=4)
        raise AdvisorError(f"no rule {key!r}", hint=f"did you mean {', '.join(close)}?" if close
                           else "`advisor rules list` shows them all")
    render_rule(rule, _console())
    overridden = any(rule.id in r.overrides for r in book.rules.values())
    if rule.parameter == "learning_rate" and rule.kind in ("recommend", "adjust") and not overridden:
        _console().print(f"evidence: `advisor evidence --rule {rule.code}` lists the published runs whose LR it sets "
                         "or adjusts (model, LR, advisor's value, source)", highlight=False, markup=False)


@rules_app.command("check", epilog="Example:\n\n  advisor rules check ./my-rules")
def rules_check(directories: list[Path] = typer.Argument(..., help="Directories of rule files to check.")) -> None:
    """Validate rule directories against the schema and check them layered over the built-in rules."""
    from advisor.rulebook.load import load_rulebook

    book = load_rulebook(directories)
    console = _console()
    builtin = load_rulebook()
    roots = [Path(d).resolve() for d in directories]
    for root in roots:
        if not any(root.rglob("*.yaml")) and not any(root.rglob("*.yml")):
            raise AdvisorError(f"{root}: no .yaml rule files here", hint="rule files end in .yaml or .yml")
    own = {rid for rid, r in book.rules.items() if any(root in r.file.resolve().parents for root in roots)}
    replaced = sorted(own & set(builtin.rules))
    console.print(f"ok: {len(own)} rules from {', '.join(str(d) for d in directories)} "
                  f"({len(replaced)} replace built-in rules), {len(book.rules)} rules in all, no conflicts",
                  highlight=False, markup=False)


@app.command(
    epilog="Examples:\n\n"
    "  advisor memory --model llama-8b --method sft --peft qlora --gpu rtx-4090\n\n"
    "  advisor memory --model qwen2.5-7b --method dpo --seq-len 2048 --batch 2 --gpu a100-40gb --format json\n\n"
    "Exit code 1 when the job does not fit the GPU (under the safety margin).",
)
def memory(
    model: str = ModelOpt,
    method: str = MethodOpt,
    peft: str = PeftOpt,
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Sequence length (default: the rulebook's)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Micro-batch per GPU (default: the largest that fits)."),
    gpu: Optional[str] = GpuOpt,
    gpu_mem: Optional[float] = typer.Option(None, "--gpu-mem", help=GPU_MEM_HELP + "."),
    gpus: Optional[int] = GpusOpt,
    attention: str = typer.Option("sdpa", "--attention", help="sdpa | flash | eager (eager keeps the s x s scores)."),
    set_: list[str] = typer.Option([], "--set", help="Pin a parameter: --set lora_rank=64 (repeatable)."),
    rules: list[Path] = RulesOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file (atomically)."),
    no_detect: bool = typer.Option(False, "--no-detect", help="Do not ask nvidia-smi when no --gpu / --gpu-mem is given."),
) -> int:
    """Predicted peak GPU memory of a fine-tuning job, itemised, and the micro-batch that fits."""
    import json

    from advisor import api

    _check_format(fmt, ("text", "json"))
    from advisor.memory.estimate import ATTENTIONS

    if attention not in ATTENTIONS:
        raise AdvisorError(f"--attention: unknown value {attention!r}", hint=f"one of {', '.join(ATTENTIONS)}")
    if batch is not None and batch < 1:
        raise AdvisorError(f"--batch: must be at least 1, got {batch}")
    book = _book(rules)
    pins = _parse_set(set_, book)
    if batch is not None:
        pins["micro_batch_size"] = batch
    rec = api.recommend(book=book, pins=pins, memory_knobs={"attention": attention}, model=model, method=method,
                        peft=peft, gpu=gpu, gpu_mem=gpu_mem, gpus=gpus, seq_len=seq_len, detect_gpu=not no_detect)
    mem = rec.memory
    if mem is None:
        raise AdvisorError("memory: the rulebook gave no sequence length", hint="give --seq-len")
    m, g = rec.facts["model"], rec.facts["gpu"]
    params: dict[str, Any] = {k: rec.parameters[k].value for k in ("lora_rank", "lora_target_modules", "gradient_checkpointing",
                                                   "load_in_4bit", "optimizer", "gradient_accumulation_steps")
              if k in rec.parameters}
    from advisor.memory.fit import CARRIED

    params.update({k: pins[k] for k in CARRIED if k in pins})  # the memory settings given beyond the rulebook's
    if fmt == "json":
        out = {"model": m["name"], "method": method, "peft": peft, "gpu": {"name": g.get("name"), "memory_gb": g.get(
            "memory_gb"), "usable_gib": g.get("usable_gib"), "count": g.get("count")}, "parameters": params,
               **mem.model_dump(mode="json"),
               "warnings": rec.warnings}
        _emit(json.dumps(out, indent=2) + "\n", output)
    else:
        import io

        from advisor.render.memory import render_memory
        from advisor.render.text import gpu_memory_text

        console = Console(record=True, width=200, file=io.StringIO()) if output is not None else _console()
        gpu_text = f"{g.get('count')} x {g.get('name') or 'GPU'} {gpu_memory_text(g)}" if g.get("usable_gib") else "no GPU known"
        shown = ", ".join(f"{k} {v if not isinstance(v, list) else '+'.join(str(x) for x in v)}"
                          for k, v in params.items())
        render_memory(mem, console, f"{m['name']} {method} with {peft} on {gpu_text}; {shown}")
        for warning in rec.warnings:
            console.print(f"warning: {warning}", highlight=False, markup=False)
        if output is not None:
            _emit(console.export_text(), output)
    return 1 if mem.fits is False else 0


@app.command(epilog="Example:\n\n  advisor models --format json")
def models(
    rules: list[Path] = RulesOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
) -> None:
    """List the models advisor knows, with their architecture numbers."""
    import json

    from advisor.facts.model import registry_model

    _check_format(fmt, ("text", "json"))
    book = _book(rules)
    facts = [registry_model(book, mid) for mid in book.models]
    if fmt == "json":
        sys.stdout.write(json.dumps([{**{k: v for k, v in f.__dict__.items()},
                                      "aliases": book.models[f.name].get("aliases", [])} for f in facts],
                                    indent=2, default=list) + "\n")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("id", "aliases", "family", "params", "hidden", "layers", "heads/kv", "context", "vocab"):
        table.add_column(col)
    for f in facts:
        params = f"{f.params_b:.1f}B" + (f" ({f.active_params_b:.1f}B act.)" if f.is_moe else "")
        table.add_row(f.name, ", ".join(book.models[f.name].get("aliases", [])), f.family, params,
                      str(f.hidden_size), str(f.num_layers), f"{f.num_heads}/{f.num_kv_heads}",
                      str(f.max_position_embeddings), str(f.vocab_size))
    _console().print(table)


@app.command(epilog="Example:\n\n  advisor gpus")
def gpus(
    rules: list[Path] = RulesOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
) -> None:
    """List the GPUs advisor knows: memory as stated (GB) and as the board reports it (GiB), and bf16 support."""
    import json

    _check_format(fmt, ("text", "json"))
    book = _book(rules)
    from advisor.facts.hardware import registry_usable_gib

    if fmt == "json":
        sys.stdout.write(json.dumps([{**{k: v for k, v in g.items() if not k.startswith("_")},
                                      "usable_gib": round(registry_usable_gib(g), 2)}
                                     for g in book.gpus.values()], indent=2) + "\n")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col, justify in (("id", "left"), ("name", "left"), ("stated", "right"), ("usable", "right"), ("bf16", "left"),
                         ("compute", "left"), ("aliases", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for g in book.gpus.values():
        usable = f"{registry_usable_gib(g):.1f} GiB" + ("" if "usable_mib" in g else " (stated size)")
        table.add_row(g["id"], g["name"], f"{g['memory_gb']:g} GB", usable, "yes" if g["bf16"] else "no",
                      g["compute_capability"], ", ".join(g.get("aliases", [])))
    _console().print(table)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"advisor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """advisor: fine-tuning hyperparameters from declarative rules, each value with its source."""


def _fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"advisor: error: {' '.join(message.split())}\n")
    sys.exit(code)


from advisor.commands import evidence as _evidence  # noqa: E402  (registered after the app and its helpers)

app.command(epilog="Examples:\n\n  advisor evidence --method dpo --peft full\n\n  advisor evidence --rule LR008 --tuned "
                   "--format json")(_evidence.evidence)
rules_app.command("fit", epilog="Examples:\n\n  advisor rules fit\n\n  advisor rules fit --check")(_evidence.rules_fit)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: one-line errors and documented exit codes, never a traceback."""
    try:
        result = app(args=argv, prog_name="advisor", standalone_mode=False)
    except AdvisorError as exc:
        _fail(str(exc), exc.exit_code)
    except typer.TyperException as exc:  # typer's usage errors (unknown option, bad value, ...)
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(0)
        hint = f" (hint: {ctx.command_path} --help)" if ctx is not None else ""
        _fail(exc.format_message() + hint, 2)
    except typer.Abort:
        _fail("aborted", 130)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # a bug: still one line, and the exit code of an error
        _fail(f"internal error: {type(exc).__name__}: {exc} (please report this)")
    sys.exit(result if isinstance(result, int) else 0)
