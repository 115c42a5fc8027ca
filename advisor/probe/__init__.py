"""advisor probe: a short, real training run that confirms a config on the target GPU.

The only package of advisor that imports torch, transformers, peft, bitsandbytes and accelerate,
and only inside the functions that train (``advisor.probe.deps.require``): importing
``advisor.probe`` or building a plan costs nothing, and without the extra the error names
``pip install 'llm-finetune-advisor[probe]'``.

Library API (what ``advisor probe`` and the learning-rate sweep are built on)::

    from advisor.rulebook import load_rulebook
    from advisor.probe import build_plan, run_probe, make_report, StopProbe

    book = load_rulebook()
    plan = build_plan(book, model="llama-3.2-1b", method="sft", peft="qlora", random_init=True, steps=30)
    #   or build_plan(book, config=Path("axolotl.yml"))  -- any config `advisor validate` reads
    result = run_probe(plan, on_step=lambda rec: ..., on_eval=lambda ev: ..., eval_every=10)
    report = make_report(book, plan, result)          # verdict by the `signal` rules, JSON-ready

    trial = plan.with_(learning_rate=1e-3, steps=40, seed=1)   # no re-resolution, same model cache

* ``build_plan(book, **how)`` -> ``ProbePlan`` (frozen): the model source, method, adapter
  (rank, alpha, dropout, targets), optimizer, LR, scheduler, warmup ratio, max_grad_norm,
  micro-batch, accumulation, sequence length, gradient checkpointing, bf16, steps, seed, data,
  memory cap and where every value came from (``plan.sources``). No torch import; bad input
  raises ``advisor.errors.AdvisorError`` (exit code 2 on the command line).
* ``ProbePlan.with_(**changes)`` -> a new plan (``learning_rate``, ``steps``, ``seed``, ...).
* ``run_probe(plan, *, on_step=None, on_eval=None, eval_every=0, lr_lambda=None,
  model_cache=True)`` -> ``ProbeResult``. ``on_step(StepRecord)`` runs after every optimizer
  step, ``on_eval(EvalRecord)`` after every evaluation (at step 0, every ``eval_every`` steps and
  at the end). A callback may raise: ``StopProbe`` ends the run cleanly (status ``stopped``);
  anything else (``optuna.TrialPruned``) propagates after clean-up. ``lr_lambda(step)``
  replaces the scheduler's multiplier of the peak LR (an LR range test). Ctrl-C raises
  ``ProbeInterrupted`` whose ``.result`` holds what was measured. The loaded base model and
  tokenizer are cached between runs of the same model source (adapters are unloaded after each
  run), so repeated probes of a tiny model cost only their steps.
* ``ProbeResult``: ``steps`` (``StepRecord``: step, loss, grad_norm, clipped, learning_rate,
  tokens, tokens_per_s, step_time_s, peak_allocated_gb, peak_reserved_gb), ``evals``
  (``EvalRecord``: step, loss, token_accuracy, perplexity), ``eval_start`` / ``eval_end``,
  ``status`` (completed | stopped | diverged | interrupted | no_fit), ``oom`` (the failed
  shape and the micro-batch search), ``wall_time_s``, ``device``, ``data`` / ``model`` notes.
* ``make_report(book, plan, result, fail_on="error")`` -> ``ProbeReport`` (``.as_dict()``
  validates against ``schemas/probe-report.schema.json``; ``.telemetry`` is the same
  ``advisor.telemetry.Telemetry`` that ``advisor diagnose`` reads from logs, judged by the same
  rules).

Memory is reported in GiB (2**30 bytes, as torch and nvidia-smi count).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ProbeInterrupted",
    "ProbePlan",
    "ProbeResult",
    "StopProbe",
    "build_plan",
    "make_report",
    "run_probe",
]

_WHERE = {
    "ProbePlan": "advisor.probe.plan",
    "build_plan": "advisor.probe.plan",
    "ProbeResult": "advisor.probe.result",
    "StopProbe": "advisor.probe.result",
    "ProbeInterrupted": "advisor.probe.result",
    "run_probe": "advisor.probe.loop",
    "make_report": "advisor.probe.report",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
