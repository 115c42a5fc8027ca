"""Axolotl's device mesh (tensor, context, expert parallel, dp_shard, dp_replicate): the GPUs it takes, the
data-parallel world the batch counts, what each size divides in the memory model, and the error a GPU count
it does not lay out over is (VCF015)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor import api
from advisor.configs.readers import read_config
from advisor.errors import AdvisorError
from advisor.facts.hardware import resolve_gpu
from advisor.facts.mesh import DeviceMesh
from advisor.memory.estimate import estimate
from advisor.rulebook.load import Rulebook
from advisor.validate import Overrides, Selection, validate_file, world_gpu
from tests.conftest import run_cli

# Axolotl's examples/distributed-parallel/qwen3-8b-fsdp-tp-cp.yaml (067b021c), the keys the memory model reads:
# 2 x 2 x 2 on 8 GPUs (its README), full fine-tuning at 8192 tokens under FSDP2
ND_EXAMPLE: dict[str, Any] = {
    "base_model": "Qwen/Qwen3-8B", "dp_shard_size": 2, "context_parallel_size": 2, "tensor_parallel_size": 2,
    "fsdp_version": 2, "fsdp_config": {"offload_params": False, "state_dict_type": "FULL_STATE_DICT",
                                       "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                       "transformer_layer_cls_to_wrap": "Qwen3DecoderLayer",
                                       "reshard_after_forward": True},
    "sequence_len": 8192, "sample_packing": True, "attn_implementation": "flash_attention_2",
    "gradient_accumulation_steps": 1, "micro_batch_size": 1, "optimizer": "adamw_torch_fused",
    "learning_rate": 2e-6, "bf16": True, "gradient_checkpointing": True,
}


@pytest.mark.parametrize(("sizes", "least", "exact", "model_parallel"), [
    ({}, 1, False, 1),
    ({"tensor_parallel_size": 2}, 2, False, 2),
    ({"dp_shard_size": 2, "context_parallel_size": 2, "tensor_parallel_size": 2}, 8, False, 4),
    ({"dp_shard_size": 4, "dp_replicate_size": 2, "tensor_parallel_size": 2}, 16, True, 2),
    ({"expert_parallel_size": 4}, 4, False, 1),
])
def test_the_least_gpus_a_mesh_takes(sizes: dict[str, int], least: int, exact: bool, model_parallel: int) -> None:
    mesh = DeviceMesh.of(sizes)
    assert (mesh.size, mesh.exact, mesh.model_parallel, mesh.stated) == (least, exact, model_parallel, bool(sizes))
    assert mesh.runs_on(least) and mesh.runs_on(2 * least) != exact
    assert not mesh.runs_on(least + 1) or least == 1


@pytest.mark.parametrize(("sizes", "data_parallel", "shard"), [
    # dp_shard filled with what is left: one FSDP group over all data-parallel GPUs, times context parallel
    ({"context_parallel_size": 2}, 4, 8),
    # dp_shard 2 on 4 data-parallel GPUs: Axolotl fills dp_replicate 2, each copy shards over 2 x cp 2
    ({"dp_shard_size": 2, "context_parallel_size": 2}, 4, 4),
    # HSDP: dp_replicate 2 copies of dp_shard 4
    ({"dp_shard_size": 4, "dp_replicate_size": 2}, 8, 4),
    ({"dp_replicate_size": 2}, 8, 4),
])
def test_fsdp_shards_over_dp_shard_times_context_parallel(sizes: dict[str, int], data_parallel: int, shard: int) -> None:
    assert DeviceMesh.of(sizes).shard_group(data_parallel) == shard


def test_mesh_words_name_the_stated_sizes() -> None:
    mesh = DeviceMesh.of({"dp_shard_size": 2, "context_parallel_size": 2, "tensor_parallel_size": 2})
    assert mesh.words() == "dp_shard_size 2 x context_parallel_size 2 x tensor_parallel_size 2 = 8 GPUs"
    assert mesh.words(str.upper).startswith("DP_SHARD_SIZE 2 x ")


def test_gpus_over_a_model_parallel_share(book: Rulebook) -> None:
    gpu = resolve_gpu(book, name="h100", memory_gb=None, count=8, detect=False).model_parallel_over(4)
    assert (gpu.count, gpu.processes, gpu.model_parallel) == (2, 8, 4)
    facts = gpu.as_facts()
    assert (facts["gpu.count"], facts["gpu.processes"]) == (2, 8)
    assert facts["gpu.total_memory_gb"] == 8 * facts["gpu.memory_gb"]
    assert gpu.report()["count"] == 8 and gpu.report()["data_parallel"] == 2 and "all_gpus" not in gpu.report()
    more = gpu.data_parallel(4)
    assert (more.count, more.processes) == (4, 16)
    plain = resolve_gpu(book, name="h100", memory_gb=None, count=8, detect=False)
    assert plain.model_parallel_over(1) is plain and "data_parallel" not in plain.report()


def _config(tmp_path: Path, data: dict[str, Any], name: str = "nd.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _validate(book: Rulebook, path: Path, gpus: int | None = None) -> list[Any]:
    gpu = resolve_gpu(book, name="h100", memory_gb=None, count=gpus, detect=False)
    report = validate_file(path, book, gpu, Overrides(gpus=gpus), Selection())
    assert report.error is None, report.error
    return report.findings


def test_a_file_runs_on_the_gpus_its_mesh_takes(book: Rulebook, tmp_path: Path) -> None:
    cfg, _ = read_config(_config(tmp_path, ND_EXAMPLE), book, None)
    one = resolve_gpu(book, name="h100", memory_gb=None, count=None, detect=False)
    gpu, counted = world_gpu(cfg, one, Overrides())
    # 8 GPUs, 2 of them on different data: the effective batch and GRPO's groups count those 2
    assert counted and (gpu.processes, gpu.count) == (8, 2)
    assert "the least its device mesh runs on: dp_shard_size 2 x context_parallel_size 2 x tensor_parallel_size 2" \
           in gpu.source
    gpu, _ = world_gpu(cfg, resolve_gpu(book, name="h100", memory_gb=None, count=16, detect=False), Overrides(gpus=16))
    assert (gpu.processes, gpu.count) == (16, 4)


def test_axolotls_nd_example_fits_its_eight_h100s(book: Rulebook, tmp_path: Path) -> None:
    """Before the mesh was read, the example was sized as one GPU's replica under FSDP over 1: VSQ003."""
    path = _config(tmp_path, ND_EXAMPLE)
    codes = [f.code for f in _validate(book, path)]
    assert "VSQ003" not in codes and "VSQ002" not in codes and "VCF015" not in codes, codes
    flat = {k: v for k, v in ND_EXAMPLE.items() if k not in ("dp_shard_size", "context_parallel_size",
                                                             "tensor_parallel_size")}
    # the same file without its mesh, on one H100: 8B full fine-tuning does not fit
    assert "VSQ003" in [f.code for f in _validate(book, _config(tmp_path, flat, "flat.yaml"))]


@pytest.mark.parametrize(("gpus", "extra", "fails"), [
    (8, {}, False), (16, {}, False), (12, {}, True), (4, {}, True),
    (16, {"dp_replicate_size": 2}, True), (8, {"dp_replicate_size": 2}, False),
])
def test_a_gpu_count_the_mesh_does_not_divide_is_vcf015(book: Rulebook, tmp_path: Path, gpus: int,
                                                        extra: dict[str, int], fails: bool) -> None:
    data = {**ND_EXAMPLE, **extra}
    if extra:
        data.pop("context_parallel_size")
    findings = [f for f in _validate(book, _config(tmp_path, data), gpus) if f.code == "VCF015"]
    assert bool(findings) == fails
    if fails:
        assert findings[0].severity == "error" and f"over {gpus} GPUs" in findings[0].message
        # reported at the first size the file states
        assert findings[0].key == "dp_shard_size" and findings[0].line == 2


def _item(est: Any, name: str) -> float:
    return next(i.gb for i in est.items if i.name == name)


def test_tensor_parallel_splits_the_decoder_state_not_the_embeddings(book: Rulebook) -> None:
    job = api.job_facts(book, model="llama-3.1-8b", method="sft", peft="full", gpu="h100", gpus=1, detect_gpu=False)
    params = {"max_seq_length": 2048, "micro_batch_size": 1, "gradient_checkpointing": True}
    whole, split = estimate(book, job, params), estimate(book, job, {**params, "tensor_parallel_size": 2})
    c = whole.counts
    share = ((c.total - c.embed) / 2 + c.embed) / c.total
    for name in ("weights (16-bit)", "gradients (16-bit)", "optimizer (fp32 master + states)"):
        assert _item(split, name) == pytest.approx(_item(whole, name) * share, rel=1e-3), name
    assert 0.5 < share < 0.6
    assert any("tensor parallel 2" in n for n in split.notes)


def test_context_parallel_halves_each_gpus_share_of_the_sequence(book: Rulebook) -> None:
    job = api.job_facts(book, model="llama-3.1-8b", method="sft", peft="lora", gpu="h100", gpus=1, detect_gpu=False)
    params = {"max_seq_length": 8192, "micro_batch_size": 1, "gradient_checkpointing": True}
    whole, split = estimate(book, job, params), estimate(book, job, {**params, "context_parallel_size": 2})
    assert split.setup.local_seq_len == 4096
    for name in ("activations", "logits and loss"):
        assert _item(split, name) == pytest.approx(_item(whole, name) / 2, rel=0.02), name
    assert _item(split, "weights (16-bit)") == _item(whole, "weights (16-bit)")


def test_fsdp_shards_over_the_mesh_not_the_data_parallel_world(book: Rulebook) -> None:
    # 8 GPUs, tensor 2 x context 2: 2 data parallel; FSDP over dp_shard 2 x context 2 = 4
    job = api.job_facts(book, model="qwen3-8b", method="sft", peft="full", gpu="h100", gpus=8, detect_gpu=False)
    job = type(job)(model=job.model, gpu=job.gpu.model_parallel_over(4), task=job.task)
    params = {"max_seq_length": 8192, "micro_batch_size": 1, "gradient_checkpointing": True, "sharding": "fsdp_full",
              "tensor_parallel_size": 2, "context_parallel_size": 2, "dp_shard_size": 2}
    est = estimate(book, job, params)
    assert est.setup.shard_gpus == 4 and est.setup.gpus == 8
    assert any("divided over 4 GPUs" in n for n in est.notes)


def test_recommend_takes_the_mesh_by_set(book: Rulebook) -> None:
    base: dict[str, Any] = dict(book=book, model="llama-8b", method="sft", peft="full", gpu="h100", detect_gpu=False,
                                flags={"--sharding": "fsdp_full"})
    rec = api.recommend(**base, gpus=8, pins={"tensor_parallel_size": 2})
    flat = api.recommend(**base, gpus=8)
    assert rec.facts["gpu"]["count"] == 8 and rec.facts["gpu"]["data_parallel"] == 4
    # the same effective batch over half the data-parallel GPUs: twice the micro-batch x accumulation
    per = rec.parameters["micro_batch_size"].value * rec.parameters["gradient_accumulation_steps"].value
    flat_per = flat.parameters["micro_batch_size"].value * flat.parameters["gradient_accumulation_steps"].value
    assert per * 4 == rec.parameters["effective_batch_size"].value
    assert flat_per * 8 == flat.parameters["effective_batch_size"].value
    assert rec.memory.parallel == "8 GPUs: 4 data parallel x tensor 2, FSDP full shard"
    # no --gpus: the least the mesh runs on
    alone = api.recommend(**base, pins={"tensor_parallel_size": 2, "context_parallel_size": 2})
    assert alone.facts["gpu"]["count"] == 4 and alone.facts["gpu"]["data_parallel"] == 1
    assert not [w for w in alone.warnings if "VCF015" in w]
    with pytest.raises(AdvisorError, match="does not lay out over 6 GPUs"):
        api.recommend(**base, gpus=6, pins={"tensor_parallel_size": 4})


def test_recommend_writes_the_mesh_into_an_axolotl_file_validate_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "nd.yaml"
    made = run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--peft", "full", "--gpu", "h100",
                   "--gpus", "8", "--sharding", "fsdp_full", "--set", "tensor_parallel_size=2",
                   "--set", "context_parallel_size=2", "--format", "axolotl", "-o", str(out), "--no-detect")
    assert made.returncode == 0, made.stderr
    data = yaml.safe_load(out.read_text())
    assert (data["tensor_parallel_size"], data["context_parallel_size"]) == (2, 2)
    checked = run_cli("validate", str(out), "--gpu", "h100", "--gpus", "8", "--no-detect")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "VCF015" not in checked.stdout and "VSQ00" not in checked.stdout
    wrong = run_cli("validate", str(out), "--gpu", "h100", "--gpus", "6", "--no-detect")
    assert wrong.returncode == 1 and "VCF015" in wrong.stdout


def test_memory_says_how_the_mesh_shares_the_gpus() -> None:
    done = run_cli("memory", "--model", "qwen3-8b", "--method", "sft", "--peft", "full", "--gpu", "h100",
                   "--gpus", "8", "--sharding", "fsdp_full", "--seq-len", "8192", "--micro-batch", "1",
                   "--set", "tensor_parallel_size=2", "--set", "context_parallel_size=2", "--set", "dp_shard_size=2",
                   "--no-detect")
    assert done.returncode == 0, done.stderr
    assert "on 8 x h100" in done.stdout
    assert "8 GPUs: 2 data parallel x tensor 2 x context 2, FSDP full shard" in done.stdout.replace("\n", " ")
    assert "VCF015" not in done.stdout + done.stderr
