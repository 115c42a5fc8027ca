"""`advisor sweep`: find the learning rate with a grid, an LR range test or successive halving."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

from advisor.commands import options as o
from advisor.commands.params import Option
from advisor.errors import AdvisorError

RESULT = "advisor.sweep.runner.Outcome"
EPILOG = ("Examples:\n\n"
          "  advisor sweep --model examples/tiny-llama/config.json --method sft --peft qlora --random-init "
          "--strategy grid --lrs 1e-5,2e-4,1e-3,5e-3\n\n"
          "  advisor sweep axolotl.yml --strategy halving --steps 120 --out-dir sweep-out --write-rules ./my-rules\n\n"
          "  advisor sweep axolotl.yml --storage postgresql://me@db/sweeps --study llama-lr   (then on other machines:)\n\n"
          "  advisor sweep --worker --storage postgresql://me@db/sweeps --study llama-lr\n\n"
          "  advisor sweep --analyse sweep-out --rules ./my-rules\n\n"
          "Exit codes: 0 an LR was found, 1 no run finished cleanly, 2 bad input, 3 the probe could not run.")


def stored(inputs: dict[str, Any]) -> dict[str, Any]:
    """Plan inputs as a sweep stores them (JSON), files as absolute paths: workers may run elsewhere."""
    out = {k: str(v.resolve()) if isinstance(v, Path) else v for k, v in inputs.items()}
    model = out.get("model")
    if model is not None and Path(model).expanduser().exists():
        out["model"] = str(Path(model).expanduser().resolve())
    return out


def parse_lrs(lrs: str | None, lr_range: str | None, points: int | None) -> list[float] | None:
    """--lrs 1e-5,2e-4 or --lr-range 1e-5:1e-2 [--points N] -> learning rates (None: neither given)."""
    from advisor.registries import check_flag
    from advisor.sweep.analysis import log_space

    def number(text: str, flag: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise AdvisorError(f"{flag}: {text!r} is not a number", hint="e.g. 2e-4") from None
        check_flag(flag, value)
        return value

    if lrs is not None and lr_range is not None:
        raise AdvisorError("give --lrs or --lr-range, not both",
                           hint="--lrs 1e-5,2e-4,1e-3 (these LRs) or --lr-range 1e-5:1e-2 --points 12 (a log grid)")
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
            raise AdvisorError(f"--lr-range: {lr_range!r}: LO must be below HI", hint="e.g. --lr-range 1e-5:1e-2")
        if points is None:
            raise AdvisorError("--lr-range needs --points", hint="e.g. --points 12")
        check_flag("--points", points)
        return log_space(lo, hi, points)
    return None


def check_strategy_flags(strategy: str, *, lrs: str | None, lr_range: str | None, points: int | None,
                         eval_every: int | None, suggest: str | None = None) -> None:
    """A flag the chosen strategy does not read is refused, not dropped: a halving sweep with --lrs would
    otherwise run its own candidates and report them as the sweep of the LRs given."""
    if strategy != "grid":
        for flag, value in (("--lrs", lrs), ("--lr-range", lr_range), ("--points", points)):
            if value is not None:
                raise AdvisorError(f"{flag} goes with --strategy grid, not {strategy}",
                                   hint=f"add --strategy grid, or drop {flag}")
    elif points is not None and lr_range is None:
        raise AdvisorError("--points goes with --lr-range", hint="e.g. --lr-range 1e-5:1e-2 --points 12")
    if strategy == "grid" and suggest is not None:  # a grid runs no range test to suggest from
        raise AdvisorError("--suggest goes with --strategy range-test or halving, not grid",
                           hint="drop --suggest, or give --strategy range-test")
    if strategy in ("halving", "range-test") and eval_every is not None:
        # halving evaluates at its rungs (halving-min-resource in rules/sweep.yaml); the range test never
        raise AdvisorError(f"--eval-every goes with --strategy grid, not {strategy}",
                           hint="halving evaluates at its rungs, the range test reads the training loss")


ANALYSE_READS = ("analyse", "fmt", "output", "rules")  # what --analyse takes: the records, and how to say them


def check_alone_with_analyse() -> None:
    """--analyse trains nothing: a flag that says what to train (or where to store it) would be dropped, so it
    is refused. Asked of click, which knows what the command line gave, defaults aside."""
    import click
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name or "")
        if param.name not in ANALYSE_READS and source not in (None, ParameterSource.DEFAULT,
                                                              ParameterSource.DEFAULT_MAP):
            flag = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
            raise AdvisorError(f"{flag} goes with a sweep that trains, not --analyse",
                               hint="--analyse reads the runs a sweep wrote: beside it only --rules, --format and "
                                    "--output")


def sweep(
    config: o.ProbeConfig = None,
    model: o.ProbeModel = None,
    method: o.OptMethod = None,
    variant: o.OptVariant = None,
    peft: o.OptPeft = None,
    gpu: o.ProbeGpu = None,
    gpu_mem: o.GpuMem = None,
    random_init: o.RandomInit = False,
    data: o.Data = None,
    no_packing: o.NoPacking = False,
    seq_len: o.SeqLen = None,
    micro_batch: o.MicroBatch = None,
    accumulation: o.Accumulation = None,
    seed: o.Seed = 0,
    max_memory: o.MaxMemory = None,
    device: o.Device = "auto",
    set_: o.Set = [],  # noqa: B006
    config_format: o.ConfigFormat = None,
    no_detect: o.NoDetect = False,
    strategy: Annotated[str, Option("--strategy", help="halving (default) | grid | range-test")] = "halving",
    lrs: Annotated[Optional[str], Option("--lrs", help="grid: learning rates, e.g. 1e-5,2e-4,1e-3,5e-3")] = None,
    lr_range: Annotated[Optional[str], Option(
        "--lr-range", help="grid: a log range LO:HI (with --points)")] = None,
    points: Annotated[Optional[int], Option("--points", help="grid: learning rates in --lr-range")] = None,
    steps: Annotated[Optional[int], Option(
        "--steps", help="Optimizer steps per run (default: rules/sweep.yaml, 80).")] = None,
    eval_every: Annotated[Optional[int], Option(
        "--eval-every", help="grid: evaluate every N steps (default: rules/sweep.yaml, 8).")] = None,
    suggest: Annotated[Optional[str], Option(
        "--suggest", help="range-test / halving: the range test's suggestion: minimum (default: fastai's lr_min, a "
                          "tenth of the LR at the loss minimum) | valley (fastai) | steepest (Lightning)")] = None,
    out_dir: Annotated[Path, Option(
        "--out-dir", help="Directory for the report, plots and the journal.")] = Path("sweep-out"),
    storage: Annotated[Optional[str], Option(
        "--storage", help="optuna storage: an RDB URL (postgresql://, sqlite:///) or a journal file. "
                          "Default: a journal file in --out-dir.")] = None,
    study: Annotated[str, Option("--study", help="Study name in the storage.")] = "advisor-sweep",
    worker: Annotated[bool, Option("--worker", help="Join a sweep started elsewhere (--storage, --study).")] = False,
    analyse: Annotated[Optional[Path], Option(
        "--analyse", help="Report a finished sweep again from the records it wrote: its --out-dir or that "
                          "all_results.json, judged by today's rules (--rules); trains nothing.")] = None,
    write_rules: Annotated[Optional[Path], Option(
        "--write-rules", help="Write the best LR as a user rule in this directory (use it with --rules).")] = None,
    no_plots: Annotated[bool, Option("--no-plots", help="Skip the PNG plots.")] = False,
    fmt: Annotated[str, o.format_option(RESULT)] = "text",
    output: o.Output = None,
    rules: o.Rules = [],  # noqa: B006
) -> int:
    """Find the learning rate: a grid, an LR range test, or successive halving over probe runs."""
    from advisor.exitcodes import Exit
    from advisor.render.emit import check_format, console, emit
    from advisor.sweep import runner

    check_format(fmt, RESULT)
    if analyse is not None:
        check_alone_with_analyse()
    book = o.book(rules)
    if analyse is not None:
        from advisor.sweep import analysis, report

        answer = report.analyse(analyse, analysis.Thresholds.from_book(book))
        emit(answer, fmt, output)
        return int(Exit.OK if answer.found() else Exit.FINDINGS)
    progress = console()

    def say(text: str) -> None:
        if fmt == "text":
            progress.print(text, highlight=False, markup=False)

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
        return int(Exit.OK)
    check_strategy_flags(strategy, lrs=lrs, lr_range=lr_range, points=points, eval_every=eval_every, suggest=suggest)
    from advisor.output import check_out_dir

    check_out_dir(out_dir, "--out-dir")
    inputs = o.plan_inputs(book, config=config, config_format=config_format, model=model, method=method, peft=peft,
                           variant=variant, gpu=gpu, gpu_mem=gpu_mem, no_detect=no_detect, random_init=random_init,
                           data=data, no_packing=no_packing, seq_len=seq_len, micro_batch=micro_batch,
                           accumulation=accumulation, max_memory=max_memory, device=device, set_=set_)
    outcome = runner.start(
        book, out=out_dir, storage_url=storage, study_name=study, strategy=strategy,
        lrs=parse_lrs(lrs, lr_range, points), steps=steps, eval_every=eval_every,
        suggest=runner.DEFAULT_SUGGESTION if suggest is None else suggest, seed=seed,
        probe=stored(inputs), events=events, plots=not no_plots, write_rules=write_rules,
    )
    emit(outcome, fmt, output)
    return int(Exit.OK if outcome.found() else Exit.FINDINGS)
