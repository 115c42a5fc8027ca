"""The memory model: counts against real models built on the meta device, NF4 bytes against real
bitsandbytes tensors, published reference points, the recommend integration and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor import api
from advisor.errors import RuleFileError
from advisor.facts.model import billions, entry_config
from advisor.memory import estimate
from advisor.memory.knowledge import knowledge
from advisor.memory.shapes import count
from advisor.render.memory import summary_line
from advisor.rulebook.load import Rulebook, load_rulebook
from tests.conftest import REPO, run_cli

REFERENCES = yaml.safe_load((REPO / "tests/fixtures/memory/references.yaml").read_text())["cases"]
# One registry model per family advisor knows (Qwen v1 has no transformers implementation).
FAMILY_MODELS = ["llama-3.1-8b", "mistral-7b", "mixtral-8x7b", "qwen2.5-7b", "qwen3-8b", "qwen3-30b-a3b",
                 "gemma-7b", "gemma-2-9b", "gemma-3-12b", "phi-3-mini", "olmo-2-7b", "olmo-1b", "olmoe-1b-7b",
                 "smollm3-3b", "gpt-oss-20b", "llama-4-scout-17b-16e", "glm-4-9b-0414", "starcoder2-3b",
                 "pythia-1.4b", "stablelm-2-1.6b", "falcon-7b"]


def resolved(book: Rulebook, model: str, method: str = "sft", peft: str = "lora", **facts: Any) -> dict[str, Any]:
    rec = api.recommend(book=book, model=model, method=method, peft=peft, detect_gpu=False, **facts)
    return {name: pv.value for name, pv in rec.parameters.items()}


def job(book: Rulebook, model: str, method: str = "sft", peft: str = "lora", **facts: Any) -> Any:
    return api.job_facts(book, model=model, method=method, peft=peft, detect_gpu=False, **facts)


def test_every_registry_family_has_an_architecture(book: Rulebook) -> None:
    know = knowledge(book)
    for fam in book.families:
        if fam in ("qwen2_moe", "phi"):  # no registry model uses them; they fall back
            continue
        assert any(fam in a["families"] for a in know.architectures.values()), fam


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_counts_match_the_real_model_on_the_meta_device(book: Rulebook, name: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    j = job(book, name)
    params = resolved(book, name)
    c = count(knowledge(book), j.model, params["lora_target_modules"], params["lora_rank"])
    entry = entry_config(book.models[name])
    model_type = entry.pop("model_type")
    cfg = AutoConfig.for_model("gemma3_text" if model_type == "gemma3" else model_type, **entry)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    assert c.total == sum(p.numel() for p in model.parameters())
    assert c.total * 2 == sum(p.numel() * p.element_size() for p in model.parameters())
    assert billions(c.total) == j.model.params_b  # the facts' own count agrees
    peft_model = get_peft_model(model, LoraConfig(r=params["lora_rank"], target_modules=params["lora_target_modules"]))
    assert c.lora == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def test_qwen_v1_is_counted_analytically(book: Rulebook) -> None:
    # model_type qwen is remote code: no transformers class to build; the published size is the check
    c = count(knowledge(book), job(book, "qwen-7b").model, ["c_attn", "c_proj", "w1", "w2"], 64)
    assert c.total / 1e9 == pytest.approx(book.models["qwen-7b"]["published_params_b"], rel=0.005)
    # c_proj matches both attn.c_proj and mlp.c_proj, as peft's suffix match does
    per_layer = 64 * ((4096 + 3 * 4096) + (4096 + 4096) + 2 * (4096 + 11008) + (11008 + 4096))
    assert c.lora == 32 * per_layer


@pytest.mark.parametrize("double_quant", [True, False])
def test_nf4_bits_per_parameter_match_bitsandbytes(book: Rulebook, double_quant: bool) -> None:
    import bitsandbytes as bnb
    import torch

    w = torch.randn(1024, 4096, dtype=torch.bfloat16)
    p = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", compress_statistics=double_quant).to("cpu")
    qs = p.quant_state
    n_bytes = p.data.numel() * p.data.element_size() + qs.absmax.numel() * qs.absmax.element_size()
    if qs.nested:
        n_bytes += qs.state2.absmax.numel() * qs.state2.absmax.element_size()
    bits = knowledge(book)["nf4-bits-double-quant" if double_quant else "nf4-bits"]
    assert n_bytes * 8 / w.numel() == pytest.approx(bits, rel=0.002)


@pytest.mark.parametrize("case", REFERENCES, ids=[c["name"] for c in REFERENCES])
def test_published_reference_points(book: Rulebook, case: dict[str, Any]) -> None:
    model = case["model"] if not case["model"].startswith("tests/") else str(REPO / case["model"])
    est = estimate(book, job(book, model, case["method"], case["peft"]), case["params"])
    if "at_most" in case:  # what must stay on the GPU: paged optimizer states may move to CPU RAM
        assert est.total_gb - est.paged_gb <= case["at_most"], est.items
    else:
        assert est.total_gb == pytest.approx(case["published"], rel=case["tolerance"]), est.items


def test_estimate_api_is_itemised_and_adds_up(book: Rulebook) -> None:
    j = job(book, "llama-8b", peft="qlora")
    est = estimate(book, j, {**resolved(book, "llama-8b", peft="qlora"), "micro_batch_size": 2})
    assert est.total_gb == pytest.approx(sum(i.gb for i in est.items), rel=1e-9)
    context = next(i for i in est.items if i.name == "CUDA context")
    assert est.reserved_gb == pytest.approx(est.total_gb - context.gb - est.paged_gb, rel=1e-9)
    know = knowledge(book)
    for item in est.items:
        assert item.name and item.detail and item.sources and all(s in know.coefficients for s in item.sources)


def test_memory_grows_with_batch_and_sequence_and_shrinks_with_checkpointing(book: Rulebook) -> None:
    j = job(book, "llama-8b", peft="qlora")
    base = {**resolved(book, "llama-8b", peft="qlora"), "max_seq_length": 2048, "micro_batch_size": 1}

    def total(**changes: Any) -> float:
        return estimate(book, j, {**base, **changes}).total_gb

    assert total(micro_batch_size=2) > total()
    assert total(max_seq_length=4096) > total()
    assert total(gradient_checkpointing=False) > total()
    # eager's s x s scores: in every layer without checkpointing; with it, only in the recomputed layer,
    # which at 2048 tokens stays below the loss's logits (the peak)
    assert total(attention="eager", gradient_checkpointing=False) > total(gradient_checkpointing=False)
    assert total(attention="eager") == total()
    assert total(attention="eager", max_seq_length=16384) > total(max_seq_length=16384)
    assert total(bnb_4bit_use_double_quant=False) > total()


def test_dpo_sizes_chosen_and_rejected(book: Rulebook) -> None:
    params = {**resolved(book, "llama-8b"), "max_seq_length": 2048, "micro_batch_size": 2}
    sft = estimate(book, job(book, "llama-8b"), params)
    dpo = estimate(book, job(book, "llama-8b", method="dpo"), params)
    one = estimate(book, job(book, "llama-8b"), {**params, "micro_batch_size": 4})
    for name in ("activations", "logits and loss"):
        gb = {e: next(i.gb for i in x.items if i.name == name) for e, x in (("sft", sft), ("dpo", dpo), ("4", one))}
        assert gb["dpo"] == pytest.approx(gb["4"]) and gb["dpo"] == pytest.approx(2 * gb["sft"])


def test_full_fine_tuning_keeps_a_reference_model_for_dpo_but_lora_does_not(book: Rulebook) -> None:
    def names(method: str, peft: str) -> set[str]:
        params = {**resolved(book, "llama-3.2-1b", method, peft), "micro_batch_size": 1}
        return {i.name for i in estimate(book, job(book, "llama-3.2-1b", method, peft), params).items}

    assert "reference model (frozen copy)" in names("dpo", "full")
    assert "reference model (frozen copy)" not in names("dpo", "lora")


def test_grpo_counts_the_generation_kv_cache(book: Rulebook) -> None:
    params = resolved(book, "llama-8b", "grpo", "qlora")
    est = estimate(book, job(book, "llama-8b", "grpo", "qlora"), {**params, "micro_batch_size": 1})
    kv = next(i for i in est.items if i.name == "KV cache (generation)")
    m = job(book, "llama-8b").model
    # max_seq_length is the completion cap the files write; TRL caps no prompt, so rl-prompt-tokens come on top
    per_completion = params["max_seq_length"] + knowledge(book)["rl-prompt-tokens"]
    tokens = params["prompts_per_step"] * params["num_generations"] * per_completion
    assert kv.gb * 2**30 == pytest.approx(2 * m.num_layers * m.num_kv_heads * m.head_dim * 2 * tokens)
    assert est.setup.prompt_assumed == 512 and any("512-token prompt" in n for n in est.notes)


def test_grpo_trains_on_prompt_plus_completion_and_its_logits_cover_the_completion(book: Rulebook) -> None:
    """TRL's GRPO computes logits for the completion tokens only (logits_to_keep)."""
    params = {**resolved(book, "qwen2.5-1.5b", "grpo", "full"), "micro_batch_size": 16, "max_prompt_length": 512,
              "max_completion_length": 1024}
    j = job(book, "qwen2.5-1.5b", "grpo", "full")
    split = estimate(book, j, params)
    assert split.setup.seq_len == 1536 and split.setup.completion_len == 1024
    logits = next(i for i in split.items if i.name == "logits and loss")
    k, vocab = knowledge(book), j.model.vocab_size
    assert logits.gb * 2**30 == pytest.approx(16 * 1024 * vocab * k["grpo-logits-bytes"])
    assert "16384 completion tokens" in logits.detail
    kv = next(i for i in split.items if i.name == "KV cache (generation)")
    assert split.setup.prompt_assumed == 0 and not any("-token prompt" in n for n in split.notes)
    # no completion cap given: max_seq_length is the one the files write (GRPOConfig max_completion_length)
    capped = estimate(book, j, {**params, "max_completion_length": None, "max_seq_length": 1024})
    assert (capped.setup.seq_len, capped.setup.completion_len) == (1536, 1024)
    assert next(i for i in capped.items if i.name == "KV cache (generation)").gb == pytest.approx(kv.gb)
    # no prompt cap given (TRL 1.16 has none): the prompt is counted at rl-prompt-tokens, and said so
    unsaid = estimate(book, j, {**params, "max_prompt_length": None, "max_seq_length": 512})
    assert (unsaid.setup.seq_len, unsaid.setup.prompt_assumed) == (512 + 1024, 512)
    assert any("each sequence is a 512-token prompt" in n and "max_prompt_length" in n for n in unsaid.notes)
    # PPO's trainer caps the whole sequence (LLaMA-Factory cutoff_len): no prompt on top of max_seq_length
    ppo = estimate(book, job(book, "qwen2.5-1.5b", "ppo", "full"),
                   {**resolved(book, "qwen2.5-1.5b", "ppo", "full"), "micro_batch_size": 1, "max_seq_length": 1024})
    assert (ppo.setup.seq_len, ppo.setup.prompt_assumed) == (1024, 0)


def test_vllm_server_moves_generation_off_this_gpu_and_colocate_reserves_its_share(book: Rulebook) -> None:
    params = {**resolved(book, "qwen2.5-1.5b", "grpo", "full"), "micro_batch_size": 4}
    j = job(book, "qwen2.5-1.5b", "grpo", "full", gpu="h100")
    generate = estimate(book, j, params)
    server = estimate(book, j, {**params, "use_vllm": True, "vllm_mode": "server"})
    assert any(i.name == "KV cache (generation)" for i in generate.items)
    assert not any(i.phase == "generate" for i in server.items) and server.setup.generator == "vllm-server"
    assert any("vLLM server" in n for n in server.notes)
    colocate = estimate(book, j, {**params, "use_vllm": True, "vllm_mode": "colocate",
                                  "vllm_gpu_memory_utilization": 0.5})
    share = next(i for i in colocate.items if i.name.startswith("vLLM (colocated"))
    assert share.gb == pytest.approx(0.5 * j.gpu.usable_gib)
    assert colocate.total_gb == pytest.approx(server.total_gb + share.gb)
    assert colocate.reserved_gb == pytest.approx(server.reserved_gb)  # outside torch's caching allocator count
    # use_vllm alone: TRL's defaults, colocate with its default share (a rule, with its source)
    default = estimate(book, j, {**params, "use_vllm": True})
    assert default.setup.generator == "vllm-colocate" and any("without vllm_mode" in n for n in default.notes)
    taken = next(i for i in default.items if i.name.startswith("vLLM (colocated"))
    assert taken.sources == ("vllm-colocate-default-share",)
    assert taken.gb == pytest.approx(knowledge(book)["vllm-colocate-default-share"] * j.gpu.usable_gib)
    no_gpu = estimate(book, job(book, "qwen2.5-1.5b", "grpo", "full"), {**params, "use_vllm": True})
    assert no_gpu.total_gb == pytest.approx(server.total_gb) and any("no GPU known" in n for n in no_gpu.notes)
    from advisor.errors import FactError

    with pytest.raises(FactError, match="vllm_mode"):
        estimate(book, j, {**params, "use_vllm": True, "vllm_mode": "remote"})


def test_pure_bf16_full_fine_tuning_holds_8_bytes_per_parameter(book: Rulebook, tmp_path: Path) -> None:
    """bf16 weights and gradients, AdamW's states in the weights' dtype, no fp32 master copy."""
    params = {**resolved(book, "llama-3.2-1b", "sft", "full"), "micro_batch_size": 1, "optimizer": "adamw_torch"}
    j = job(book, "llama-3.2-1b", "sft", "full")
    mixed, pure = estimate(book, j, params), estimate(book, j, {**params, "pure_bf16": True})
    n = pure.counts.total

    def static(est: Any) -> float:
        return sum(i.gb for i in est.items if i.phase in ("static", "grads")) * 2**30

    assert static(pure) == pytest.approx(8 * n) and static(mixed) == pytest.approx(16 * n)
    assert pure.setup.pure_bf16 and any("no fp32 master" in note for note in pure.notes)
    step = next(i for i in pure.items if i.name == "optimizer step buffer")
    assert step.gb * 2**30 == pytest.approx(2 * n)  # the sqrt buffer has the states' dtype
    paged32 = estimate(book, j, {**params, "pure_bf16": True, "optimizer": "paged_adamw_32bit"})
    states = next(i for i in paged32.items if i.name == "optimizer states (paged)")
    assert states.gb * 2**30 == pytest.approx(8 * n)  # bitsandbytes' 32-bit states stay fp32 for bf16 weights
    lora = estimate(book, job(book, "llama-3.2-1b"), {**resolved(book, "llama-3.2-1b"), "pure_bf16": True})
    assert not lora.setup.pure_bf16  # a full fine-tuning setting: adapters ignore it
    config = tmp_path / "lf.yaml"
    config.write_text("model_name_or_path: meta-llama/Llama-3.2-1B\nstage: sft\nfinetuning_type: full\n"
                      "pure_bf16: true\nper_device_train_batch_size: 1\ncutoff_len: 1024\n")
    from advisor.configs.readers import read_config

    cfg, _ = read_config(config, book)
    assert cfg.values["pure_bf16"].value is True and cfg.values["pure_bf16"].line == 4


def test_alternatives_keep_the_jobs_own_settings_and_re_estimate_each_gpu(book: Rulebook) -> None:
    """A colocated vLLM takes a share of whichever GPU it is on; an alternative adapter keeps the caps."""
    pins = {"max_prompt_length": 512, "max_completion_length": 2048, "use_vllm": True, "vllm_mode": "colocate",
            "vllm_gpu_memory_utilization": 0.5}
    rec = api.recommend(book=book, model="qwen2.5-7b", method="grpo", peft="lora", gpu="l4", pins=pins,
                        detect_gpu=False)
    assert rec.memory is not None and not rec.memory.fits
    alternatives = rec.memory.alternatives
    for text in alternatives:  # each claim holds when the job is re-run as the alternative says
        if text.startswith("a bigger GPU"):
            gpu = text.split("--gpu ")[1].rstrip(")")
            there = api.recommend(book=book, model="qwen2.5-7b", method="grpo", peft="lora", gpu=gpu, pins=pins,
                                  detect_gpu=False)
            assert there.memory is not None and there.memory.fits, text
        if text.startswith("QLoRA"):
            there = api.recommend(book=book, model="qwen2.5-7b", method="grpo", peft="qlora", gpu="l4", pins=pins,
                                  detect_gpu=False)
            assert there.memory is not None and there.memory.fits, text
    assert any(a.startswith("a bigger GPU") for a in alternatives)
    no_vllm = api.recommend(book=book, model="qwen2.5-7b", method="grpo", peft="lora", gpu="l4",
                            pins={**pins, "vllm_mode": "server"}, detect_gpu=False)
    assert no_vllm.memory is not None and no_vllm.memory.total_gb < rec.memory.total_gb


def test_parameter_bounds_and_choices_reject_bad_values(book: Rulebook, tmp_path: Path) -> None:
    proc = run_cli("memory", "--model", "qwen2.5-1.5b", "--method", "grpo", "--gpu", "h100", "--no-detect",
                   "--set", "vllm_gpu_memory_utilization=1.5")
    assert proc.returncode == 2 and "1.5 is above the largest meaningful value 1" in proc.stderr
    proc = run_cli("memory", "--model", "qwen2.5-1.5b", "--method", "grpo", "--gpu", "h100", "--no-detect",
                   "--set", "vllm_mode=COLOCATE")
    assert proc.returncode == 2 and "'COLOCATE' is not one of server, colocate" in proc.stderr
    config = tmp_path / "grpo.yaml"
    config.write_text("model_name_or_path: Qwen/Qwen2.5-1.5B-Instruct\nnum_generations: 8\nuse_vllm: true\n"
                      "vllm_mode: colocated\n")
    proc = run_cli("validate", str(config), "--gpu", "h100", "--no-detect")
    assert proc.returncode == 1  # a finding (VCF010, an error), and the rest of the file is judged
    said = " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines
    assert f"{config}:4: VCF010 error [vllm_mode] vllm_mode: 'colocated' is not one of server, colocate" in said
    assert "Traceback" not in proc.stderr


def test_recommend_qlora_8b_on_a_4090_fits_with_accumulation(book: Rulebook) -> None:
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="qlora", gpu="rtx-4090", detect_gpu=False)
    p = rec.parameters
    assert rec.memory is not None and rec.memory.fits
    capacity = 24564 / 1024  # rules/gpus.yaml usable_mib of the RTX 4090
    assert rec.memory.gpu_gb == pytest.approx(capacity, abs=0.001)
    assert rec.memory.headroom_gb == pytest.approx(capacity - rec.memory.total_gb, abs=0.01)
    assert p["micro_batch_size"].rule == "batch-micro-by-memory-model"
    assert p["micro_batch_size"].value * p["gradient_accumulation_steps"].value == p["effective_batch_size"].value
    assert not any("does not fit" in w for w in rec.warnings)


def test_recommend_full_8b_on_a_4090_says_it_does_not_fit_and_what_would(book: Rulebook) -> None:
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="full", gpu="rtx-4090", detect_gpu=False)
    assert rec.memory is not None and rec.memory.fits is False and rec.memory.max_micro_batch == 0
    warning = next(w for w in rec.warnings if w.startswith("does not fit"))
    assert "optimizer (fp32 master + states)" in warning and "optimizer step buffer" in warning  # why
    # 20 B per parameter at torch AdamW's step: no single registry GPU holds it under the margin
    assert "QLoRA instead of full" in warning and "a bigger GPU" not in warning
    assert "(--gpus 16 --sharding zero3)" in warning  # what does hold it: 16 of this GPU, fully sharded
    small = api.recommend(book=book, model="llama-3.2-1b", method="sft", peft="full", gpu="rtx-4090",
                          detect_gpu=False)
    assert small.memory is not None and not small.memory.fits
    assert any("--gpu" in a for a in small.memory.alternatives)
    # each alternative was checked: QLoRA at the same length really fits
    qlora = api.recommend(book=book, model="llama-8b", method="sft", peft="qlora", gpu="rtx-4090", detect_gpu=False)
    assert qlora.memory is not None and qlora.memory.fits


def test_a_pinned_micro_batch_that_does_not_fit_is_a_warning(book: Rulebook) -> None:
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="qlora", gpu="rtx-4090", detect_gpu=False,
                        pins={"micro_batch_size": 8})
    assert rec.parameters["micro_batch_size"].value == 8
    assert any(w.startswith("micro_batch_size=8 is predicted to need") for w in rec.warnings)


def test_no_gpu_still_reports_the_peak_at_micro_batch_one(book: Rulebook) -> None:
    rec = api.recommend(book=book, model="llama-8b", method="sft", detect_gpu=False)
    assert rec.memory is not None and rec.memory.gpu_gb is None and rec.memory.micro_batch == 1


def test_a_user_rule_directory_can_replace_a_coefficient(tmp_path: Path) -> None:
    (tmp_path / "mem.yaml").write_text(yaml.safe_dump({"memory": {"coefficients": [{
        "id": "safety-margin", "value": 0.5, "unit": "fraction", "summary": "cautious team",
        "source": {"doc": "team wiki"}, "confidence": "low"}]}}))
    book = load_rulebook([tmp_path])
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="qlora", gpu="h100", detect_gpu=False)
    # The margin applies to the H100's reported capacity (81559 MiB), not its stated 80 GB.
    assert rec.memory is not None and rec.memory.usable_gb == pytest.approx(81559 / 1024 * 0.5, abs=0.01)


def test_a_broken_coefficient_names_the_file_and_id(tmp_path: Path) -> None:
    (tmp_path / "mem.yaml").write_text(yaml.safe_dump({"memory": {"coefficients": [{
        "id": "safety-margin", "value": "1 +", "unit": "fraction", "summary": "typo",
        "source": {"doc": "x"}, "confidence": "low"}]}}))
    with pytest.raises(RuleFileError) as exc:
        load_rulebook([tmp_path])
    assert "safety-margin" in str(exc.value) and "mem.yaml" in str(exc.value) and "'value'" in str(exc.value)


def test_a_broken_final_norm_formula_names_the_file_architecture_and_key(tmp_path: Path) -> None:
    (tmp_path / "mem.yaml").write_text(yaml.safe_dump({"memory": {"architectures": [{
        "id": "falcon", "families": ["falcon"], "source": "team wiki", "norms": 0, "final_norm": "2 *",
        "modules": [{"name": "dense", "in": "model.hidden_size", "out": "model.hidden_size"}]}]}}))
    with pytest.raises(RuleFileError) as exc:
        load_rulebook([tmp_path])
    assert "mem.yaml" in str(exc.value) and "'falcon'" in str(exc.value) and "'final_norm'" in str(exc.value)


def test_memory_file_schema_rejects_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "mem.yaml").write_text(yaml.safe_dump({"memory": {"coefficients": [{
        "id": "x", "value": 1, "unit": "u", "summary": "s", "source": {"doc": "d"}, "confidence": "low",
        "colour": "red"}]}}))
    with pytest.raises(RuleFileError, match="mem.yaml"):
        load_rulebook([tmp_path])


def test_cli_memory_table_json_and_exit_codes() -> None:
    text = run_cli("memory", "--model", "llama-8b", "--method", "sft", "--peft", "qlora", "--gpu", "rtx-4090",
                   "--seq-len", "2048", "--no-detect")
    assert text.returncode == 0, text.stderr
    for part in ("weights (nf4-dq, linear layers)", "LoRA adapters", "activations", "logits and loss",
                 "CUDA context", "total (peak)", "fits"):
        assert part in text.stdout
    js = run_cli("memory", "--model", "llama-8b", "--method", "dpo", "--micro-batch", "2", "--gpu", "a100-40gb",
                 "--format", "json", "--no-detect")
    data = json.loads(js.stdout)
    # the total is the fixed items plus the largest phase (forward / backward, optimizer step, generation)
    phases: dict[str, float] = {}
    for i in data["items"]:
        phases[i["phase"]] = phases.get(i["phase"], 0.0) + i["gb"]
    fixed = sum(phases.pop(p, 0.0) for p in ("static", "paged", "fixed"))
    assert data["micro_batch"] == 2 and data["total_gb"] == pytest.approx(fixed + max(phases.values()), abs=0.05)
    full = run_cli("memory", "--model", "llama-8b", "--method", "sft", "--peft", "full", "--gpu", "rtx-4090",
                   "--no-detect")
    assert full.returncode == 1 and "does NOT fit" in full.stdout and "what would fit" in full.stdout
    bad = run_cli("memory", "--model", "llama-8b", "--method", "sft", "--attention", "magic", "--no-detect")
    assert bad.returncode == 2 and "--attention" in bad.stderr and "Traceback" not in bad.stderr


def test_memory_sizes_what_recommend_would_write_adapted_to_fit() -> None:
    """Without --peft and --seq-len, `memory` sizes recommend's job: QLoRA, 1024-token completions after a
    512-token prompt, for 8B GRPO on 24 GB;
    with both given it sizes the user's job and it does not fit (exit 1)."""
    base = ("memory", "--model", "llama-8b", "--method", "grpo", "--gpu", "rtx-4090", "--no-detect")
    text = run_cli(*base)
    assert text.returncode == 0, text.stderr
    assert "grpo with qlora" in text.stdout
    assert text.stdout.count("adapted to fit:") == 2
    data = json.loads(run_cli(*base, "--format", "json").stdout)
    assert data["peft"] == "qlora" and data["seq_len"] == 1536 and data["fits"] is True
    assert [a.split(" (")[0] for a in data["adapted"]] == ["QLoRA instead of LoRA", "max_seq_length 4096 -> 1024"]
    assert "micro-batch 4 x 1536 tokens (512 prompt + 1024 completion): fits" in text.stdout
    # the JSON goes to a pipe: what was changed, and what still does not fit, is said on stderr
    machine = run_cli(*base, "--format", "json")
    assert [line.split(":")[1].strip() for line in machine.stderr.splitlines()] == ["adapted to fit"] * 2
    kept = run_cli(*base, "--peft", "lora", "--seq-len", "4096", "--format", "json")
    assert kept.stderr.startswith("advisor: warning: does not fit: at micro-batch 1 the predicted peak is 40.3 GiB")
    assert kept.returncode == 1
    data = json.loads(kept.stdout)
    assert data["peft"] == "lora" and data["seq_len"] == 4096 + 512 and data["fits"] is False and data["adapted"] == []


def test_recommend_text_and_explain_show_the_memory_line() -> None:
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--peft", "qlora", "--gpu", "rtx-4090",
                   "--explain", "--no-detect")
    assert "memory predicted peak" in proc.stdout and "headroom" in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("memory predicted peak"))
    assert " GB" not in line and "GiB of 24.0 GiB" in line
    assert "logits and loss" in proc.stdout  # --explain itemises


def test_memory_line_says_gib_and_what_is_left_beyond_the_margin(book: Rulebook) -> None:
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="qlora", gpu="rtx-4090", detect_gpu=False)
    mem = rec.memory
    assert mem is not None and mem.fits and mem.usable_gb is not None and mem.headroom_gb is not None
    line = summary_line(mem)
    spare = mem.usable_gb - mem.total_gb
    assert f"headroom {mem.headroom_gb:.1f} GiB, {spare:.1f} GiB beyond the 10% safety margin" in line
    # The headroom holds the margin: what is beyond it is the headroom less 10% of the capacity.
    assert mem.headroom_gb - spare == pytest.approx(mem.gpu_gb * mem.safety_margin, abs=0.02)  # type: ignore[operator]
    over = api.recommend(book=book, model="llama-8b", method="sft", peft="qlora", gpu="rtx-4090", detect_gpu=False,
                         pins={"micro_batch_size": 8})
    assert over.memory is not None and not over.memory.fits
    assert "does NOT fit" in summary_line(over.memory) and "GiB over the" in summary_line(over.memory)
    assert all(" GB" not in w for w in over.warnings if "predicted" in w)


def test_gpu_mem_alone_is_the_capacity_in_gib(book: Rulebook) -> None:
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="qlora", gpu_mem=24, detect_gpu=False)
    assert rec.memory is not None and rec.memory.gpu_gb == 24 and rec.memory.usable_gb == pytest.approx(21.6)
    proc = run_cli("memory", "--model", "llama-8b", "--method", "sft", "--peft", "qlora", "--gpu-mem", "24",
                   "--no-detect")
    assert "on 1 x GPU 24.0 GiB;" in proc.stdout and "of 24.0 GiB" in proc.stdout
    assert "GiB" in run_cli("memory", "--help").stdout


def test_nothing_fits_alternatives_name_gib_and_usable_capacity(book: Rulebook) -> None:
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="lora", gpu="l4", detect_gpu=False)
    assert rec.memory is not None and rec.memory.alternatives
    bigger = next(a for a in rec.memory.alternatives if a.startswith("a bigger GPU"))
    assert "GiB usable" in bigger and all(" GB (" not in a or "GiB usable" in a for a in rec.memory.alternatives)


def test_a_bigger_gpu_keeps_bf16_when_the_job_has_it(book: Rulebook) -> None:
    """The smallest GPU that holds this job is a V100 32GB, which has no bf16: an L4 user is pointed past it."""
    from advisor.facts.hardware import registry_usable_gib
    from advisor.memory.knowledge import knowledge

    gpus, keep = knowledge(book).gpus, 1 - knowledge(book)["safety-margin"]
    on_l4 = api.recommend(book=book, model="llama-8b", method="sft", peft="lora", gpu="l4", detect_gpu=False)
    assert on_l4.memory is not None
    need = float(next(a for a in on_l4.memory.alternatives if a.startswith("a bigger GPU")).split(" holds ")[1].split()[0])
    smallest = min((g for g in gpus.values() if registry_usable_gib(g) * keep >= need), key=registry_usable_gib)
    assert smallest["id"] == "v100-32gb" and not smallest["bf16"]  # the case this test is about
    bigger = next(a for a in on_l4.memory.alternatives if a.startswith("a bigger GPU"))
    named = bigger.split("--gpu ")[1].rstrip(")")
    assert gpus[named]["bf16"] and registry_usable_gib(gpus[named]) * keep >= need
    on_t4 = api.recommend(book=book, model="llama-8b", method="sft", peft="lora", gpu="t4", detect_gpu=False)
    assert on_t4.memory is not None
    assert any(a.startswith("a bigger GPU") and "--gpu v100-32gb" in a for a in on_t4.memory.alternatives)


def test_ppo_counts_its_value_model_trained_in_full_and_its_frozen_reward_model(book: Rulebook) -> None:
    """TRL's PPOTrainer wraps only the policy with peft; the value model trains in full beside it."""
    ppo = api.recommend(book=book, model="llama-8b", method="ppo", peft="lora", gpu="a100-80gb", detect_gpu=False)
    grpo = api.recommend(book=book, model="llama-8b", method="grpo", peft="lora", gpu="a100-80gb", detect_gpu=False,
                         pins={"micro_batch_size": ppo.parameters["micro_batch_size"].value})
    assert ppo.memory is not None and grpo.memory is not None
    items = {i.name: i.gb for i in ppo.memory.items}
    weights = items["weights (16-bit)"]
    assert items["PPO reward model (frozen, 16-bit)"] == weights
    assert items["PPO value model weights (16-bit)"] == weights
    # 12 B of fp32 master + Adam states per value-model parameter: six times its 16-bit weights
    assert items["PPO value model optimizer (fp32 master + states)"] == pytest.approx(6 * weights, rel=1e-3)
    assert not ppo.memory.fits  # 8B PPO does not fit one 80 GB GPU, the "fits, 22.9 GiB headroom" was wrong
    assert ppo.memory.total_gb > grpo.memory.total_gb + 8 * weights


def test_qlora_instead_of_lora_keeps_the_users_adapter() -> None:
    """"QLoRA instead of lora" is what --peft qlora would run with the same --set: the same rank, not the rule's
    (a rank-8192 adapter was told it fits in 21 GiB as QLoRA, which predicts 260 GiB)."""
    from tests.conftest import run_cli

    def memory(rank: int, *extra: str) -> dict[str, Any]:
        proc = run_cli("memory", "--model", "llama-8b", "--method", "sft", "--gpu", "a100-40gb", "--seq-len", "8192",
                       "--set", f"lora_rank={rank}", "--format", "json", "--no-detect", *extra)
        assert proc.returncode in (0, 1), proc.stderr
        return dict(json.loads(proc.stdout))

    qlora = memory(64, "--peft", "qlora")["total_gb"]
    said = [a for a in memory(64, "--peft", "lora")["alternatives"] if a.startswith("QLoRA instead of lora")]
    assert said and f"{qlora:.1f} GiB" in said[0]
    # without --peft the same change is made, not only named: the user's rank on 4-bit weights
    assert memory(64)["total_gb"] == qlora
    big = memory(256, "--peft", "qlora")["total_gb"]
    assert big > 36 and not any(a.startswith("QLoRA") for a in memory(256, "--peft", "lora")["alternatives"])


@pytest.mark.parametrize(("optimizer", "item", "ratio"), [
    ("sgd", "PPO value model optimizer (fp32 master weights)", 2),  # SGD keeps no state: the fp32 master alone
    ("adamw_8bit", "PPO value model optimizer (fp32 master + states)", 3),  # 4 + two 8-bit states (2)
    ("paged_adamw_32bit", "PPO value model optimizer states (paged)", 4),  # AdamW's 8, in managed memory
])
def test_ppos_value_model_is_trained_by_the_runs_optimizer(book: Rulebook, optimizer: str, item: str,
                                                          ratio: float) -> None:
    """TRL's PPOTrainer builds one optimizer over the policy and the value model (PolicyAndValueWrapper): the
    value model's states are the run's optimizer's, not always AdamW's."""
    ppo = api.recommend(book=book, model="llama-8b", method="ppo", peft="lora", gpu="a100-80gb", detect_gpu=False,
                        pins={"optimizer": optimizer})
    assert ppo.memory is not None
    items = {i.name: i.gb for i in ppo.memory.items}
    assert items[item] == pytest.approx(ratio * items["PPO value model weights (16-bit)"], rel=1e-3)
    assert "PPO value model optimizer (fp32 master + states)" not in items or optimizer == "adamw_8bit"


@pytest.mark.parametrize("tied", [False, True])
def test_lora_modules_to_save_copies_match_peft_after_an_adamw_step(book: Rulebook, tmp_path: Path, tied: bool) -> None:
    """peft deep-copies each module in lora_modules_to_save in its loaded dtype and trains the copy: the
    estimate's copies, gradients and AdamW states equal what torch holds for them after one step."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 256,
             "tie_word_embeddings": tied}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**shape, "architectures": ["LlamaForCausalLM"]}))
    saved = ["embed_tokens", "lm_head"]
    params = {**resolved(book, str(path)), "micro_batch_size": 1, "optimizer": "adamw_torch",
              "lora_modules_to_save": saved}
    est = estimate(book, job(book, str(path)), params)
    predicted = sum(i.gb for i in est.items if i.name.startswith("lora_modules_to_save")) * 2**30
    assert not any("not counted" in n for n in est.notes)

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**shape), dtype=torch.bfloat16)
    peft_model = get_peft_model(model, LoraConfig(r=params["lora_rank"], target_modules=params["lora_target_modules"],
                                                  modules_to_save=saved))
    copies = [p for n, p in peft_model.named_parameters() if p.requires_grad and "modules_to_save" in n]
    assert copies and all(p.dtype == torch.bfloat16 for p in copies)  # not upcast like the LoRA weights
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, shape["vocab_size"], (1, 16))
    peft_model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    held = sum(p.numel() * p.element_size() * 2 for p in copies)  # the copy and its gradient
    held += sum(t.numel() * t.element_size() for p in copies for t in opt.state[p].values() if t.dim())
    assert predicted == pytest.approx(held)
    assert sum(p.numel() for p in copies) == 2 * shape["vocab_size"] * shape["hidden_size"]  # a tied head is copied too


def test_sgd_and_adafactor_as_the_trainer_builds_them_keep_no_full_state_and_are_sized_so(book: Rulebook, tmp_path: Path) -> None:
    """transformers' optim sgd is torch's SGD without momentum: after a real step it holds no state
    tensor (AdamW holds two per parameter); its Adafactor keeps rows and columns, not full second
    moments. So full fine-tuning with either counts fp32 master weights only."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    held = {}
    for optim in ("sgd", "adamw_torch"):
        args = TrainingArguments(output_dir=str(tmp_path / optim), optim=optim, use_cpu=True, report_to=[])
        opt = Trainer(model=model, args=args).create_optimizer()
        ids = torch.randint(0, 64, (1, 8))
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        held[optim] = sum(1 for st in opt.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0)
        model.zero_grad()
    assert held["sgd"] == 0 and held["adamw_torch"] == 2 * sum(1 for _ in model.parameters())
    # Adafactor: a matrix keeps a row and a column vector, not a second moment its size
    args = TrainingArguments(output_dir=str(tmp_path / "adafactor"), optim="adafactor", use_cpu=True, report_to=[])
    opt = Trainer(model=model, args=args).create_optimizer()
    ids = torch.randint(0, 64, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    bound = sum(sum(p.shape[-2:]) if p.dim() >= 2 else p.numel() for p in model.parameters())
    assert 0 < sum(v.numel() for st in opt.state.values() for v in st.values() if torch.is_tensor(v) and v.dim()) <= bound
    j = job(book, "llama-8b", peft="full")
    base = resolved(book, "llama-8b", peft="full")
    sgd, adamw, adafactor = (estimate(book, j, {**base, "optimizer": o}) for o in ("sgd", "adamw_torch", "adafactor"))
    per = {o: next(i for i in e.items if i.name.startswith("optimizer (")).gb
           for o, e in (("sgd", sgd), ("adamw", adamw), ("adafactor", adafactor))}
    assert per["sgd"] == per["adafactor"] == pytest.approx(per["adamw"] / 3)  # 4 B of fp32 master against 4 + 8
    assert "optimizer step buffer" not in {i.name for i in sgd.items}


def test_the_tables_total_names_a_colocated_vllm_outside_torchs_reservation(book: Rulebook) -> None:
    """total = reserved + paged states + colocated vLLM + CUDA context: the total's line names each part."""
    from rich.console import Console

    from advisor.render.memory import render_items

    pins = {"use_vllm": True, "vllm_mode": "colocate", "max_prompt_length": 256, "max_completion_length": 256}
    rec = api.recommend(book=book, model="qwen2.5-0.5b", method="grpo", peft="lora", gpu="h100", pins=pins,
                        detect_gpu=False)
    assert rec.memory is not None
    console = Console(record=True, width=400)
    render_items(rec.memory, console)
    total = next(line for line in console.export_text().splitlines() if line.startswith("total (peak)"))
    assert "+ colocated vLLM + CUDA context" in total
    vllm = next(i.gb for i in rec.memory.items if i.name.startswith("vLLM (colocated"))
    context = next(i.gb for i in rec.memory.items if i.name == "CUDA context")
    assert rec.memory.total_gb == pytest.approx(rec.memory.reserved_gb + vllm + context, abs=0.02)


@pytest.mark.parametrize(("targets", "says"), [
    (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
     "LoRA reaches experts.gate_up_proj, experts.down_proj through peft's mapping of gate_proj, up_proj, down_proj"),
    (["q_proj", "v_proj"], "LoRA reaches them only when target_modules name gate_proj, up_proj, down_proj"),
])
def test_the_fused_experts_note_agrees_with_the_lora_count(book: Rulebook, targets: list[str], says: str) -> None:
    """Qwen3-MoE's fused experts take adapters through peft's name mapping (shapes._lora counts them): the
    note must not say that target_modules never reach them."""
    j = job(book, "qwen3-30b-a3b", peft="qlora")
    est = estimate(book, j, {"max_seq_length": 1024, "micro_batch_size": 1, "lora_rank": 8,
                             "lora_target_modules": targets})
    note = next(n for n in est.notes if "fused 3-D parameters" in n)
    assert says in note and "do not reach" not in note
    experts_reached = any(m.kind == "experts" and set(m.targets) <= set(est.counts.lora_modules)
                          for m in est.counts.modules)
    assert experts_reached == says.startswith("LoRA reaches experts")
    gpt_oss = estimate(book, job(book, "gpt-oss-20b", peft="qlora"),
                       {"max_seq_length": 1024, "micro_batch_size": 1, "lora_rank": 8, "lora_target_modules": targets})
    assert any("target_modules do not reach them" in n for n in gpt_oss.notes)  # no mapping: never reached


def test_full_fine_tuning_with_paged_states_names_the_fp32_master_alone(book: Rulebook) -> None:
    """paged_adamw_8bit: the 8-bit states are the paged item; what stays in torch's allocator is the master."""
    j = job(book, "llama-3.2-1b", "sft", "full")
    est = estimate(book, j, {"max_seq_length": 1024, "micro_batch_size": 1, "optimizer": "paged_adamw_8bit"})
    items = {i.name: i for i in est.items}
    assert "optimizer (fp32 master + states)" not in items
    assert items["optimizer (fp32 master weights)"].gb * 2**30 == pytest.approx(4 * est.counts.total)
    assert items["optimizer states (paged)"].gb * 2**30 == pytest.approx(2 * est.counts.total)


def test_optimizer_lines_are_named_from_the_bytes_they_count(book: Rulebook) -> None:
    """SGD (no momentum) keeps no state: the LoRA line and full fine-tuning's optimizer line say what they count."""
    for peft, with_states, without in (("lora", "LoRA adapters (weights, gradients, optimizer)",
                                        "LoRA adapters (weights, gradients)"),
                                       ("full", "optimizer (fp32 master + states)", "optimizer (fp32 master weights)")):
        j, base = job(book, "llama-8b", peft=peft), resolved(book, "llama-8b", peft=peft)
        sgd = {i.name: i for i in estimate(book, j, {**base, "optimizer": "sgd"}).items}
        adamw = {i.name for i in estimate(book, j, {**base, "optimizer": "adamw_torch"}).items}
        assert without in sgd and with_states not in sgd, (peft, sorted(sgd))
        assert with_states in adamw and without not in adamw, (peft, sorted(adamw))
    lora = {i.name: i for i in estimate(book, job(book, "llama-8b"), {**resolved(book, "llama-8b"),
                                                                       "optimizer": "sgd"}).items}
    assert lora["LoRA adapters (weights, gradients)"].detail.endswith("x 8 B")  # fp32 weights + fp32 gradients


def test_full_fine_tuning_of_quantized_weights_is_refused_as_the_trainers_do(tmp_path: Path) -> None:
    """transformers' Trainer refuses a quantized model without an adapter (validate_quantization_for_training),
    and so does Axolotl's config check: memory and recommend say so (exit 2) instead of sizing 16-bit weights,
    and validate reports VQT001 while its memory checks size the job VQT001 expects (16-bit full fine-tuning)."""
    for command, flag in (("memory", "load_in_4bit"), ("recommend", "load_in_8bit")):
        proc = run_cli(command, "--model", "llama-8b", "--method", "sft", "--peft", "full", "--gpu", "h100",
                       "--set", f"{flag}=true", "--no-detect")
        assert proc.returncode == 2, (command, proc.stdout)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert f"{flag} true with full fine-tuning" in proc.stderr and "--peft qlora" in proc.stderr
    off = run_cli("memory", "--model", "llama-8b", "--method", "sft", "--peft", "full", "--gpu", "h100",
                  "--set", "load_in_4bit=false", "--no-detect")
    assert off.returncode in (0, 1) and "weights (16-bit)" in off.stdout
    config = tmp_path / "axolotl.yaml"
    config.write_text("base_model: meta-llama/Llama-3.1-8B\nload_in_4bit: true\nsequence_len: 4096\n"
                      "micro_batch_size: 2\ngradient_accumulation_steps: 8\nlearning_rate: 1.0e-5\n"
                      "datasets:\n  - path: tatsu-lab/alpaca\n    type: alpaca\n")
    proc = run_cli("validate", str(config), "--gpu", "h100", "--no-detect")
    said = " ".join(proc.stdout.split())  # rich wraps long lines
    assert proc.returncode == 1 and "VQT001 error" in said, proc.stderr
    assert "VSQ003 warning" in said and "LoRA instead of full" in said, said


def test_two_figures_that_read_the_same_at_one_decimal_get_two() -> None:
    """A warning never reads '21.6 GiB, above the 21.6 GiB left': where one decimal hides the gap, both get two."""
    from advisor.output import fmt_gib as _gib

    assert (_gib(21.62, 21.59), _gib(21.59, 21.62)) == ("21.62", "21.59")
    assert (_gib(40.3, 21.59), _gib(21.59, 40.3), _gib(88.149)) == ("40.3", "21.6", "88.2")


def test_axolotls_quantize_moe_experts_quantizes_the_fused_experts(book: Rulebook, tmp_path: Path) -> None:
    """Axolotl's quantize_moe_experts (monkeypatch/moe_quant.py) quantizes transformers 5's fused 3-D expert
    weights on load with bitsandbytes, which alone leaves them unquantized (and fp32 after the kbit upcast)."""
    j = job(book, "qwen3-30b-a3b", peft="qlora")
    params = {"max_seq_length": 1024, "micro_batch_size": 1, "lora_rank": 8, "lora_target_modules": ["q_proj", "v_proj"]}
    plain, quant = estimate(book, j, params), estimate(book, j, {**params, "quantize_moe_experts": True})
    items = {i.name: i.gb for i in quant.items}
    assert "weights (fused MoE experts, unquantized)" not in items
    experts = items[f"weights ({quant.setup.quantization}, fused MoE experts)"]
    unquantized = next(i.gb for i in plain.items if i.name == "weights (fused MoE experts, unquantized)")
    linear = next(i for i in quant.items if i.name.endswith("linear layers)"))
    # the same bytes per parameter as the linear layers bitsandbytes quantizes
    assert experts / quant.counts.experts == pytest.approx(linear.gb / quant.counts.linear_weights, rel=1e-6)
    assert unquantized / experts > 7  # fp32 after the kbit upcast, against about 4.1 bits
    assert any("quantize_moe_experts" in n for n in quant.notes)
    # full fine-tuning quantizes nothing, so the key changes nothing there
    full = job(book, "qwen3-30b-a3b", peft="full")
    p_full = {"max_seq_length": 1024, "micro_batch_size": 1}
    assert estimate(book, full, {**p_full, "quantize_moe_experts": True}).total_gb == estimate(book, full, p_full).total_gb
    cfg = tmp_path / "moe.yaml"
    cfg.write_text(yaml.safe_dump({"base_model": "Qwen/Qwen3-30B-A3B", "adapter": "qlora", "load_in_4bit": True,
                                   "quantize_moe_experts": True, "lora_r": 16, "lora_alpha": 32,
                                   "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                                   "micro_batch_size": 1, "gradient_accumulation_steps": 4, "sequence_len": 2048,
                                   "gradient_checkpointing": True, "learning_rate": 2e-4}))
    codes = run_cli("validate", str(cfg), "--gpu", "h100", "--no-detect", "--select", "VSQ")
    assert codes.returncode == 0 and "VSQ003" not in codes.stdout, codes.stdout
    cfg.write_text(cfg.read_text().replace("quantize_moe_experts: true", "quantize_moe_experts: false"))
    assert "VSQ003" in run_cli("validate", str(cfg), "--gpu", "h100", "--no-detect", "--select", "VSQ").stdout
