"""run_probe: the training loop, its telemetry, and the out-of-memory search.

One optimizer step = ``gradient_accumulation_steps`` micro-batches of ``micro_batch_size``
examples (x2 sequences for chosen / rejected pairs), the gradient norm measured before
clipping, then the optimizer and scheduler step. Every step yields a StepRecord; evaluations on
the held-out split run at step 0, every ``eval_every`` steps and at the end.

Out of memory (CUDA's OutOfMemoryError, or a CPU step over --max-memory): the failing shape is
recorded, the micro-batch is halved until a check fits and then bisected between the largest fit
and the smallest failure; the run then starts again with that micro-batch and the accumulation
that keeps the effective batch. A check trains the shape training will have at its peak: two
optimizer steps (the optimizer's state exists from the first step on, the activations of the
second come on top) of two accumulated micro-batches (the gradients of the first stay while the
second runs). Should the run still go out of memory at the checked micro-batch, that failure
joins the same report and the search goes on below it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

from advisor import registries
from advisor.probe import deps
from advisor.probe.data import IGNORE, ProbeData, Sequence, load_data
from advisor.probe.measure import MemoryMeter, is_oom
from advisor.probe.model import Built, build, pick_device, release
from advisor.probe.plan import OPTIMIZERS, ProbePlan
from advisor.probe.result import (
    EvalRecord,
    FitAttempt,
    OomReport,
    ProbeInterrupted,
    ProbeResult,
    StepRecord,
    StopProbe,
)

NONFINITE_STEPS_TO_STOP = 3  # not-knowledge: after this many NaN/inf losses in a row nothing more is learned
MAX_OOM_SEARCHES = 3  # not-knowledge: restarts after an OOM before giving up
FIT_CHECK_STEPS = 2  # not-knowledge: the first optimizer step creates the state, the second peaks over it
FIT_CHECK_ACCUMULATION = 2  # not-knowledge: one micro-batch runs while the previous one's gradients are held
_DATA_CACHE: dict[tuple[Any, ...], ProbeData] = {}

StepCallback = Callable[[StepRecord], None]
EvalCallback = Callable[[EvalRecord], None]


class _OutOfMemory(Exception):
    def __init__(self, micro: int, step: int, error: str, peak_gb: float | None) -> None:
        super().__init__(error)
        self.micro, self.step, self.error, self.peak_gb = micro, step, error, peak_gb


def _oom_error(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _data(plan: ProbePlan, built: Built) -> ProbeData:
    key = (plan.data, plan.seq_len, built.codec.name, plan.model.cache_key)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_data(plan, built.codec)
    return _DATA_CACHE[key]


def _optimizer(plan: ProbePlan, params: list[Any], device: str, notes: list[str]) -> Any:
    import torch

    impl = OPTIMIZERS[plan.optimizer]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": plan.weight_decay}, {"params": no_decay, "weight_decay": 0}]
    groups = [g for g in groups if g["params"]]
    adam: dict[str, Any] = {"lr": plan.learning_rate}
    if plan.adam_beta1 is not None and plan.adam_beta2 is not None:
        adam["betas"] = (plan.adam_beta1, plan.adam_beta2)
    if plan.adam_epsilon is not None:
        adam["eps"] = plan.adam_epsilon
    if impl.startswith("bitsandbytes"):
        if device != "cuda":
            notes.append(f"optimizer {plan.optimizer} needs CUDA: torch AdamW ran on the CPU instead "
                         "(its state is 32-bit: more memory than the 8-bit optimizer)")
        else:
            import bitsandbytes as bnb

            cls = getattr(bnb.optim, impl.removeprefix("bitsandbytes "))
            return cls(groups, **adam)
    if impl == "torch.optim.SGD":
        return torch.optim.SGD(groups, lr=plan.learning_rate)
    if impl == "transformers Adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(groups, lr=plan.learning_rate, scale_parameter=False, relative_step=False)
    return torch.optim.AdamW(groups, **adam)


def _scheduler(plan: ProbePlan, opt: Any, lr_lambda: Callable[[int], float] | None) -> Any:
    import torch
    from transformers import get_scheduler

    if lr_lambda is not None:
        return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    return get_scheduler(plan.lr_scheduler_type, opt, num_warmup_steps=plan.warmup_steps,
                         num_training_steps=plan.schedule_total)


class _Batches:
    """Training sequences in a seeded order, reshuffled each pass; pairs stay together."""

    def __init__(self, data: ProbeData, seed: int) -> None:
        self.seqs = data.train
        self.unit = 2 if data.pairs else 1
        self.rng = random.Random(seed)
        self.order: list[int] = []
        self.passes = 0

    def take(self, n_sequences: int) -> list[Sequence]:
        out: list[Sequence] = []
        while len(out) < n_sequences:
            if not self.order:
                units = list(range(0, len(self.seqs) - self.unit + 1, self.unit))
                self.rng.shuffle(units)
                self.order = [i + k for i in units for k in range(self.unit)]
                self.passes += 1
            out.append(self.seqs[self.order.pop(0)])
        return out


def _tensors(seqs: list[Sequence], device: str) -> tuple[Any, Any, Any]:
    import torch

    ids = torch.tensor([s.input_ids for s in seqs], dtype=torch.long, device=device)
    labels = torch.tensor([s.labels for s in seqs], dtype=torch.long, device=device)
    mask = torch.tensor([[1] * s.real + [0] * (len(s.input_ids) - s.real) for s in seqs], dtype=torch.long,
                        device=device)
    return ids, labels, mask


def _autocast(built: Built) -> Any:
    import contextlib

    import torch

    prec = built.precision
    if prec.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=prec.device, dtype=prec.autocast)


def evaluate(built: Built, data: ProbeData, step: int) -> EvalRecord:
    """Loss, next-token accuracy and perplexity on the held-out sequences (one at a time: the
    logits of a large vocabulary are the biggest tensor of the step)."""
    import torch

    model = built.model
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for seq in data.eval:
            ids, labels, mask = _tensors([seq], built.precision.device)
            with _autocast(built):
                logits = model(input_ids=ids, attention_mask=mask).logits
            logits, target = logits[:, :-1].float(), labels[:, 1:]
            keep = target != IGNORE
            if not bool(keep.any()):
                continue
            loss_sum += float(torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum"))
            correct += int((logits.argmax(-1)[keep] == target[keep]).sum())
            count += int(keep.sum())
            del logits
    model.train()
    loss = loss_sum / count if count else math.nan
    overflows = not math.isfinite(loss) or loss > 700  # not-knowledge: math.exp overflows past ~709
    return EvalRecord(step=step, loss=loss, token_accuracy=correct / count if count else math.nan,
                      perplexity=math.inf if overflows else math.exp(loss), tokens=count)


class _Trainer:
    def __init__(self, plan: ProbePlan, built: Built, data: ProbeData, meter: MemoryMeter, micro: int, accum: int,
                 lr_lambda: Callable[[int], float] | None, notes: list[str]) -> None:
        import torch

        self.plan, self.built, self.data, self.meter = plan, built, data, meter
        self.micro, self.accum = micro, accum
        self.params = [p for p in built.model.parameters() if p.requires_grad]
        self.opt = _optimizer(plan, self.params, built.precision.device, notes)
        self.sched = _scheduler(plan, self.opt, lr_lambda)
        self.scaler = torch.amp.GradScaler("cuda") if built.precision.fp16_scaler else None
        self.batches = _Batches(data, plan.seed)

    def step(self, number: int) -> StepRecord:
        import torch

        model, device = self.built.model, self.built.precision.device
        self.meter.start_step()
        start = time.perf_counter()
        losses: list[float] = []
        tokens = 0
        lr = float(self.opt.param_groups[0]["lr"])
        for _ in range(self.accum):
            seqs = self.batches.take(self.micro * self.plan.sequences_per_example)
            ids, labels, mask = _tensors(seqs, device)
            with _autocast(self.built):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            scaled = loss / self.accum
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            losses.append(float(loss.detach()))
            tokens += int(mask.sum())
            del loss, scaled
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        clip = self.plan.max_grad_norm
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip if clip is not None else math.inf))
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        allocated, reserved = self.meter.end_step()
        elapsed = time.perf_counter() - start
        self.meter.check(reserved)
        return StepRecord(step=number, loss=sum(losses) / len(losses), grad_norm=norm,
                          clipped=clip is not None and norm > clip, learning_rate=lr, tokens=tokens,
                          tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0, step_time_s=elapsed,
                          peak_allocated_gb=allocated, peak_reserved_gb=reserved)


def _fits(plan: ProbePlan, built: Built, data: ProbeData, meter: MemoryMeter, micro: int, notes: list[str]) -> FitAttempt:
    """Does this micro-batch stay in memory? Checked on the steps where training peaks (module docstring)."""
    trainer = None
    peak: float | None = None
    fits = True
    try:
        accum = min(FIT_CHECK_ACCUMULATION, math.ceil(plan.effective_batch / micro))
        trainer = _Trainer(plan, built, data, meter, micro, accum, None, notes)
        for number in range(1, FIT_CHECK_STEPS + 1):
            rec = trainer.step(number)
            peak = max(peak or 0.0, rec.peak_reserved_gb)
    except Exception as exc:
        if not is_oom(exc):
            raise
        fits, peak = False, getattr(exc, "peak_gb", None)
    if trainer is not None:
        trainer.opt.zero_grad(set_to_none=True)
        for p in trainer.params:
            p.grad = None
    del trainer
    meter.release()
    return FitAttempt(micro_batch=micro, fits=fits, peak_gb=peak)


def search_micro_batch(fits: Callable[[int], FitAttempt], failed: int) -> tuple[int, list[FitAttempt]]:
    """Largest micro-batch below ``failed`` that fits: halve until one fits, then bisect."""
    attempts: list[FitAttempt] = []
    hi, lo = failed, 0
    mb = failed // 2
    while mb >= 1:
        attempts.append(fits(mb))
        if attempts[-1].fits:
            lo = mb
            break
        hi, mb = mb, mb // 2
    if lo == 0:
        return 0, attempts
    while hi - lo > 1:
        mid = (lo + hi) // 2
        attempts.append(fits(mid))
        if attempts[-1].fits:
            lo = mid
        else:
            hi = mid
    return lo, attempts


def record_oom(report: OomReport | None, plan: ProbePlan, micro: int, step: int, error: str, peak_gb: float | None,
               fits: Callable[[int], FitAttempt], *, search: bool = True) -> OomReport:
    """Search below a failed micro-batch; a failure after an earlier search extends that search's report.
    Without ``search`` (no searches left) the failure is recorded and nothing is said to fit."""
    if report is None:
        report = OomReport(failed_micro_batch=micro, sequences=micro * plan.sequences_per_example,
                           seq_len=plan.seq_len, at_step=step, error=error)
    else:  # the checked micro-batch failed in training: the search goes on below it
        report.attempts.append(FitAttempt(micro_batch=micro, fits=False, peak_gb=peak_gb, during=f"training, step {step}"))
    fit, attempts = search_micro_batch(fits, micro) if search else (0, [])
    report.attempts.extend(attempts)
    report.largest_fit = fit
    report.accumulation = math.ceil(plan.effective_batch / fit) if fit else None
    report.effective_batch = fit * report.accumulation if report.accumulation else None
    return report


def _train(plan: ProbePlan, built: Built, data: ProbeData, meter: MemoryMeter, result: ProbeResult, micro: int,
           accum: int, on_step: StepCallback | None, on_eval: EvalCallback | None, eval_every: int,
           lr_lambda: Callable[[int], float] | None) -> None:
    trainer = _Trainer(plan, built, data, meter, micro, accum, lr_lambda, result.model_notes)

    def run_eval(step: int) -> None:
        ev = evaluate(built, data, step)
        result.evals.append(ev)
        if on_eval is not None:
            on_eval(ev)

    run_eval(0)
    nonfinite = 0
    for number in range(1, plan.steps + 1):
        rec: StepRecord | None = None
        oom: _OutOfMemory | None = None
        try:
            rec = trainer.step(number)
        except Exception as exc:
            if not is_oom(exc):
                raise
            oom = _OutOfMemory(micro, number, _oom_error(exc), getattr(exc, "peak_gb", None))
        if oom is not None:
            del trainer
            raise oom
        assert rec is not None
        result.steps.append(rec)
        if on_step is not None:
            on_step(rec)
        nonfinite = nonfinite + 1 if not math.isfinite(rec.loss) else 0
        if nonfinite >= NONFINITE_STEPS_TO_STOP:
            result.status = "diverged"
            result.stop_reason = f"{nonfinite} steps in a row with a non-finite loss"
            break
        if eval_every and number % eval_every == 0 and number != plan.steps:
            run_eval(number)
    if trainer.batches.passes > 1:
        result.data_notes.append(f"the probe made {trainer.batches.passes} passes over the training sequences")
    run_eval(len(result.steps))


def _trl_classes(plan: ProbePlan) -> tuple[Any, Any, str] | None:
    """TRL's trainer for the plan's method (advisor.probe.trl_run), or None: the probe's own LM step trains it."""
    from advisor.probe import trl_run

    spec = registries.method(plan.method)
    if spec is None or not spec.trl_trainer or spec.trl_trainer == "SFTTrainer":
        return None
    deps.require_trl()
    return trl_run.trainer_classes(plan)


def _missing_trainer(plan: ProbePlan) -> str | None:
    spec = registries.method(plan.method)
    if spec is None or not spec.trl_trainer or spec.trl_trainer == "SFTTrainer":
        return None
    from advisor.probe.trl_run import missing_trainer_note

    return missing_trainer_note(plan)


def run_probe(plan: ProbePlan, *, on_step: StepCallback | None = None, on_eval: EvalCallback | None = None,
              eval_every: int = 0, lr_lambda: Callable[[int], float] | None = None, model_cache: bool = True,
              save_adapter: str | None = None) -> ProbeResult:
    """Train ``plan.steps`` optimizer steps for real and return what was measured (see the package docstring)."""
    needs_bnb = plan.peft == "qlora" or OPTIMIZERS[plan.optimizer].startswith("bitsandbytes")
    deps.require(bitsandbytes=needs_bnb)
    result = ProbeResult(micro_batch_size=plan.micro_batch_size, gradient_accumulation_steps=plan.gradient_accumulation_steps,
                         trainer="the probe's own language-modelling step (advisor.probe.loop)")
    started = time.perf_counter()
    device = pick_device(plan)
    meter = MemoryMeter(device, plan.max_memory_gb)
    result.device, result.memory_kind = device, meter.kind
    result.memory_capacity_gb, result.memory_baseline_gb = meter.capacity_gb, meter.baseline_gb
    if device == "cuda":
        import torch

        result.device_name = torch.cuda.get_device_name(0)
    else:
        import platform

        result.device_name = platform.processor() or platform.machine()
    built: Built | None = None
    micro, accum = plan.micro_batch_size, plan.gradient_accumulation_steps
    classes = _trl_classes(plan)
    if classes is None and (missing := _missing_trainer(plan)):
        result.trainer += f"; {missing}"
    try:
        if classes is not None:
            from advisor.probe.trl_run import run_trl

            run_trl(plan, classes, result, device, meter, on_step, lr_lambda, save_adapter)
        for search in range(0 if classes is not None else MAX_OOM_SEARCHES + 1):
            built = build(plan, device, cache=model_cache)
            result.model_notes[:] = built.notes
            result.precision, result.tokenizer = built.precision.label, built.codec.name
            result.trainable_params, result.total_params = built.trainable, built.total
            result.load_time_s = time.perf_counter() - started
            data = _data(plan, built)
            result.data_notes[:] = [data.description, *data.notes]
            result.micro_batch_size, result.gradient_accumulation_steps = micro, accum
            try:
                _train(plan, built, data, meter, result, micro, accum, on_step, on_eval, eval_every, lr_lambda)
                break
            except _OutOfMemory as oom:
                assert built is not None
                fitting = built
                for param in fitting.model.parameters():  # gradients the failed step left behind
                    param.grad = None
                meter.release()
                searches_left = search < MAX_OOM_SEARCHES
                report = result.oom = record_oom(
                    result.oom, plan, oom.micro, oom.step, oom.error, oom.peak_gb,
                    lambda mb: _fits(plan, fitting, data, meter, mb, result.model_notes),  # noqa: B023
                    search=searches_left)
                result.steps.clear()
                result.evals.clear()
                release(built)
                built = None
                meter.release()
                if not report.largest_fit:
                    result.status = "no_fit"
                    result.stop_reason = ("not even a micro-batch of 1 fits in memory" if searches_left else
                                          f"out of memory in training at micro-batch {oom.micro}, after "
                                          f"{MAX_OOM_SEARCHES} searches whose checks had passed")
                    return result
                micro, accum = report.largest_fit, report.accumulation or 1
        if save_adapter is not None and built is not None and classes is None:
            built.model.save_pretrained(save_adapter)
    except StopProbe as stop:
        result.status, result.stop_reason = "stopped", str(stop) or "stopped by a callback"
    except KeyboardInterrupt:
        result.status, result.stop_reason = "interrupted", "interrupted (Ctrl-C)"
        result.wall_time_s = time.perf_counter() - started
        raise ProbeInterrupted(result) from None
    finally:
        meter.close()
        release(built)
        result.wall_time_s = time.perf_counter() - started
    return result
