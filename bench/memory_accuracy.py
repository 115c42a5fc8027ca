"""How close the memory model is to real models.

1. (default, CPU) Every registry family built on the `meta` device with transformers: total
   parameters, LoRA trainable parameters (peft, the family's target modules and the rulebook's
   rank) and 16-bit weight bytes, predicted / real, printed as ratios. Qwen v1 (model_type qwen)
   has no transformers implementation: it is counted analytically only, and says so.
2. `--cuda`: short real trainings (random-init weights from the registry config; peft LoRA,
   bitsandbytes NF4 double-quant + prepare_model_for_kbit_training for QLoRA; bf16 autocast;
   SDPA; the rulebook's optimizer) and the predicted peak against torch.cuda.max_memory_reserved()
   and max_memory_allocated(), appended as a new run to bench/results/memory_accuracy.md (earlier
   runs stay: they were measured). `--device cpu --tiny` runs the same training path on a tiny
   config (no memory statistics on CPU).
3. `--rescore`: recompute the prediction columns of every run in bench/results/memory_accuracy.md
   with the current rules (after a change to rules/memory.yaml); the measured columns stay.

    python bench/memory_accuracy.py
    python bench/memory_accuracy.py --cuda
    python bench/memory_accuracy.py --rescore
    python bench/memory_accuracy.py --device cpu --tiny
"""

from __future__ import annotations

import argparse
import gc
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from advisor import api
from advisor.facts.job import JobFacts
from advisor.memory.knowledge import GIB, knowledge
from advisor.memory.measured import Measured, predict, rescore, table
from advisor.memory.plan import values
from advisor.memory.shapes import count
from advisor.rulebook import load_rulebook

RESULTS = Path(__file__).parent / "results" / "memory_accuracy.md"
COUNTS = Path(__file__).parent / "results" / "memory_counts.md"
# One registry model per family (the families advisor knows).
FAMILY_MODELS = ["llama-3.1-8b", "mistral-7b", "mixtral-8x7b", "qwen2.5-7b", "qwen3-8b", "qwen3-30b-a3b",
                 "gemma-7b", "gemma-2-9b", "gemma-3-12b", "phi-3-mini", "olmo-2-7b", "qwen-7b"]
# (model, peft, seq_len, micro_batch, gradient_checkpointing); peft "full-bf16": full fine-tuning with the
# model loaded in bf16 and trained so (bf16 AdamW states, no fp32 master weights)
CUDA_CASES: list[tuple[str, str, int, int, bool]] = [
    ("llama-3.2-1b", "lora", 1024, 4, True),
    ("llama-3.2-1b", "lora", 2048, 2, False),
    ("llama-3.2-1b", "full", 1024, 2, True),
    ("qwen2.5-1.5b", "lora", 2048, 4, True),
    ("qwen2.5-1.5b", "qlora", 2048, 4, True),
    ("qwen2.5-1.5b", "qlora", 4096, 1, False),
    ("llama-8b", "qlora", 1024, 1, True),
    ("llama-8b", "qlora", 4096, 1, True),
    ("llama-8b", "qlora", 2048, 4, True),
    ("llama-8b", "lora", 2048, 2, True),
    ("llama-8b", "lora", 4096, 1, True),
    # added with the recalibration and measured after it (not used to shape the model): 8B QLoRA
    # without checkpointing (the fp32 MLP activations at 8B), full fine-tuning of another model
    ("llama-8b", "qlora", 1024, 2, False),
    ("qwen2.5-1.5b", "full", 2048, 1, True),
    # added with pure bf16 full fine-tuning (measured after the model for it was written)
    ("llama-3.2-1b", "full-bf16", 1024, 2, True),
    ("qwen2.5-1.5b", "full-bf16", 2048, 2, True),
]
TINY = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 2,
        "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 4096, "max_position_embeddings": 2048,
        "tie_word_embeddings": False}


def hf_config(book: Any, job: JobFacts) -> Any:
    """A transformers config for a registry model (the registry mirrors config.json keys)."""
    from transformers import AutoConfig

    entry = book.models.get(job.model.name)
    raw = dict(TINY) if entry is None else {k: v for k, v in entry.items()
                                          if not k.startswith("_") and k not in ("id", "aliases", "hf_id")
                                          and not k.startswith("published")}
    model_type = raw.pop("model_type")
    if model_type == "gemma3":  # the registry keeps the text model's keys
        model_type = "gemma3_text"
    cfg = AutoConfig.for_model(model_type, **raw)
    cfg.use_cache = False
    return cfg


def rec_params(book: Any, model: str, method: str, peft: str, seq: int | None = None) -> tuple[JobFacts, dict[str, Any]]:
    job = api.job_facts(book, model=model, method=method, peft=peft, detect_gpu=False, seq_len=seq)
    rec = api.recommend(book=book, model=model, method=method, peft=peft, detect_gpu=False, seq_len=seq)
    return job, values(rec)


# --- 1. counts on the meta device ---------------------------------------------------------

def counts_table(book: Any) -> list[dict[str, Any]]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    rows = []
    for name in FAMILY_MODELS:
        job, params = rec_params(book, name, "sft", "lora")
        c = count(knowledge(book), job.model, params["lora_target_modules"], params["lora_rank"])
        row: dict[str, Any] = {"model": name, "family": job.model.family, "pred_total": c.total, "pred_lora": c.lora}
        if job.model.model_type == "qwen":
            row.update(real_total=None, real_lora=None, note="no transformers implementation: analytic only")
            rows.append(row)
            continue
        cfg = hf_config(book, job)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        real_total = sum(p.numel() for p in model.parameters())
        real_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        peft_model = get_peft_model(model, LoraConfig(r=params["lora_rank"], lora_alpha=params["lora_alpha"],
                                                      target_modules=params["lora_target_modules"]))
        real_lora = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        row.update(real_total=real_total, real_lora=real_lora, pred_bytes=c.total * 2, real_bytes=real_bytes,
                   note=", ".join(c.unmatched_targets and [f"targets without a linear module: {', '.join(c.unmatched_targets)}"]))
        rows.append(row)
    return rows


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.4f}"


# --- 2. real trainings ----------------------------------------------------------------------

def build(book: Any, job: JobFacts, params: dict[str, Any], device: str) -> Any:
    """A random-init model as the QLoRA / LoRA / full path loads it, on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = hf_config(book, job)
    cfg._attn_implementation = "sdpa"
    peft = job.task.peft
    # full: fp32 master weights under autocast, unless trained purely in bf16
    dtype = torch.float32 if peft == "full" and not params.get("pure_bf16") else torch.bfloat16
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    if peft == "qlora":
        import bitsandbytes as bnb

        for parent in list(model.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear) and child is not model.get_output_embeddings():
                    q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                          compute_dtype=torch.bfloat16, quant_type="nf4",
                                          compress_statistics=bool(params.get("bnb_4bit_use_double_quant", True)),
                                          device="meta")
                    setattr(parent, child_name, q)
    model.to_empty(device=device)
    # to_empty gives every module a new Parameter, so an lm_head tied to the embedding comes back as a
    # second matrix: tie it again, as from_pretrained does (accelerate init_empty_weights: tie_weights).
    model.tie_weights()
    with torch.no_grad():
        for mod in model.modules():
            if type(mod).__name__ == "Linear4bit":
                w = torch.empty(mod.out_features, mod.in_features, dtype=torch.bfloat16, device=device).normal_(0, 0.02)
                mod.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4",
                                               compress_statistics=bool(params.get("bnb_4bit_use_double_quant", True)),
                                               ).to(device)
                if mod.bias is not None:
                    mod.bias.zero_()
        for name, p in model.named_parameters():
            if p.dtype in (torch.bfloat16, torch.float32) and "weight" in name and p.dim() >= 2:
                p.normal_(0, 0.02)
            elif p.dtype in (torch.bfloat16, torch.float32):
                p.fill_(1.0 if "norm" in name else 0.0)
        for buf_name, buf in model.named_buffers():
            if "inv_freq" in buf_name:  # rotary buffers: recompute on the device
                dim = buf.numel() * 2
                base = getattr(cfg, "rope_theta", None) or cfg.rope_parameters.get("rope_theta", 10000.0)
                buf.copy_(1.0 / (base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)))
    if peft == "qlora":
        from peft import prepare_model_for_kbit_training

        model.is_loaded_in_4bit = True
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(params["gradient_checkpointing"]),
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif params.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if peft in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=params["lora_rank"], lora_alpha=params["lora_alpha"],
                                                 lora_dropout=params.get("lora_dropout", 0.0),
                                                 target_modules=params["lora_target_modules"]))
    model.config.use_cache = False
    return model


def optimizer_for(model: Any, name: str) -> Any:
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    if "8bit" in name:
        import bitsandbytes as bnb

        cls = bnb.optim.PagedAdamW8bit if name.startswith("paged") else bnb.optim.AdamW8bit
        return cls(trainable, lr=1e-5)
    return torch.optim.AdamW(trainable, lr=1e-5)


def is_tied(model: Any) -> bool:
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    base = getattr(out, "base_layer", out)  # a LoRA-wrapped lm_head
    return base is not None and base.weight is inp.weight


def train_case(book: Any, case: tuple[str, str, int, int, bool], device: str, steps: int) -> dict[str, Any]:
    import torch

    model_name, peft, seq, micro, gc_on = case
    pure = peft == "full-bf16"
    peft = "full" if pure else peft
    job, params = rec_params(book, model_name, "sft", peft, seq)
    params = {**params, "micro_batch_size": micro, "max_seq_length": seq, "gradient_checkpointing": gc_on,
              "pure_bf16": pure}
    job = replace(job, gpu=replace(job.gpu, count=1))
    cuda = device == "cuda"
    gc.collect()  # a model of the previous case held in a reference cycle would count in this one's peak
    if cuda:
        torch.cuda.empty_cache()
    start = time.perf_counter()
    model = build(book, job, params, device)
    model.train()
    tied = is_tied(model)
    opt = optimizer_for(model, str(params["optimizer"]))
    vocab = job.model.vocab_size
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        ids = torch.randint(0, vocab, (micro, seq), device=device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    real = {"allocated_gb": 0.0, "reserved_gb": 0.0, "context_gb": 0.0}
    if cuda:
        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info()
        real = {"allocated_gb": torch.cuda.max_memory_allocated() / GIB,
                "reserved_gb": torch.cuda.max_memory_reserved() / GIB,
                "context_gb": (total - free) / GIB - torch.cuda.memory_reserved() / GIB}
    adapter = peft != "full"
    m = Measured(model=model_name, peft=peft, seq_len=seq, micro_batch=micro, gradient_checkpointing=gc_on,
                 tied=tied, optimizer=str(params["optimizer"]),
                 lora_rank=int(params["lora_rank"]) if adapter else 0,
                 lora_alpha=int(params["lora_alpha"]) if adapter else 0,
                 lora_dropout=float(params.get("lora_dropout") or 0.0) if adapter else 0.0,
                 lora_targets=tuple(params["lora_target_modules"]) if adapter else (), pure_bf16=pure, **real)
    del model, opt
    if cuda:
        torch.cuda.empty_cache()
    return {"measured": m, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cuda", action="store_true", help="run short real trainings on the GPU")
    ap.add_argument("--device", default=None, help="cuda (with --cuda) or cpu")
    ap.add_argument("--tiny", action="store_true", help="a tiny llama config instead of the case list")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", default=None, help="run only cases whose name contains this")
    ap.add_argument("--rescore", action="store_true", help="recompute the predictions in the results file")
    args = ap.parse_args(argv)
    book = load_rulebook()
    if args.rescore:
        return rescore_results(book)
    if not (args.cuda or args.device):
        import torch
        import transformers

        rows = counts_table(book)
        lines = ["# Memory model: parameter counts against real models (meta device)", "",
                 f"Command: `python bench/memory_accuracy.py`; torch {torch.__version__}, transformers "
                 f"{transformers.__version__}. Ratios are predicted / real (LoRA: the rulebook's rank and targets).", "",
                 "| model | family | params | params pred/real | LoRA trainable | LoRA pred/real | bf16 bytes pred/real | note |",
                 "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in rows:
            lines.append(f"| {r['model']} | {r['family']} | {r['pred_total']:,} | {ratio(r['pred_total'], r.get('real_total'))} "
                         f"| {r['pred_lora']:,} | {ratio(r['pred_lora'], r.get('real_lora'))} | "
                         f"{ratio(r.get('pred_bytes'), r.get('real_bytes'))} | {r.get('note') or ''} |")
        print("\n".join(lines))
        COUNTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return 0
    import torch

    device = args.device or "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU: use --device cpu --tiny for the code path", file=sys.stderr)
        return 2
    cases = CUDA_CASES if not args.tiny else [("tiny", p, 128, 2, gc) for p in ("lora", "qlora", "full", "full-bf16")
             for gc in (True, False)]
    if args.tiny:
        book.models["tiny"] = {**TINY, "id": "tiny", "hf_id": "local/tiny", "_file": "bench"}
    if args.only:
        cases = [c for c in cases if args.only in " ".join(map(str, c))]
    rows = []
    for case in cases:
        out = train_case(book, case, device, args.steps)
        m = out["measured"]
        est = predict(book, m) if not args.tiny else None
        rows.append((m, est))
        print(f"{m.case} ({m.setup.split(';')[-1].strip()}) lm_head {'tied' if m.tied else 'untied'}: "
              f"allocated {m.allocated_gb:.2f} GiB "
              f"reserved {m.reserved_gb:.2f} GiB context {m.context_gb:.2f} GiB"
              + (f"; predicted {est.allocated_gb:.2f} / {est.reserved_gb:.2f}" if est else "")
              + f" ({out['seconds']:.1f} s)", flush=True)
    if device == "cuda" and not args.tiny:
        write_results([(m, e) for m, e in rows if e is not None], " ".join(sys.argv), torch.cuda.get_device_name(),
                      args.steps)
    return 0


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(rows: list[tuple[Measured, Any]], command: str, gpu: str, steps: int) -> None:
    """Append this run to bench/results/memory_accuracy.md (earlier runs were measured: they stay)."""
    import torch
    import transformers

    lines = [
        f"## Run of {time.strftime('%Y-%m-%d')} at commit {commit()}", "",
        f"Command: `{command}`  ", f"Device: {gpu}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"Python {platform.python_version()}  ",
        f"Each case: random-init weights from the registry config, {steps} optimizer steps with bf16 autocast, SDPA; "
        "QLoRA = bitsandbytes NF4 double quant + prepare_model_for_kbit_training. GiB throughout; ratios are "
        "predicted / measured.", "",
        *table(rows), "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    before = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Memory model accuracy (real trainings)\n"
    RESULTS.write_text(before.rstrip("\n") + "\n\n" + "\n".join(lines), encoding="utf-8")
    print(f"appended to {RESULTS}")


def rescore_results(book: Any) -> int:
    text = RESULTS.read_text(encoding="utf-8")
    new = rescore(book, text, str(RESULTS))
    RESULTS.write_text(new, encoding="utf-8")
    print(f"{RESULTS}: predictions recomputed with the rules at commit {commit()} (and any uncommitted change)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
