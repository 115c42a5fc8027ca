"""Sharding: the fact from flags and configs (DeepSpeed, FSDP, accelerate launch configs), the
per-GPU memory under each stage against the ZeRO paper, offload to CPU RAM, what would fit, and
the world size in the effective batch."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor import api
from advisor.configs.document import ConfigError
from advisor.configs.readers import read_config
from advisor.configs.sharding import read_launch_config
from advisor.memory.estimate import estimate
from advisor.memory.knowledge import GIB
from advisor.registries import bundled_deepspeed, strategies
from advisor.rulebook.load import Rulebook
from tests.conftest import run_cli

STATE_ITEMS = ("weights (16-bit)", "gradients (16-bit)", "optimizer (fp32 master + states)")


def _job(book: Rulebook, gpus: int, model: str = "llama-3.1-8b") -> Any:
    return api.job_facts(book, model=model, method="sft", peft="full", gpu="h100", gpus=gpus, detect_gpu=False)


def _params(**extra: Any) -> dict[str, Any]:
    return {"max_seq_length": 1024, "micro_batch_size": 1, "gradient_checkpointing": True, **extra}


def _state_bytes_per_param(book: Rulebook, gpus: int, sharding: str) -> float:
    job = _job(book, gpus)
    est = estimate(book, job, _params(sharding=sharding))
    items = {i.name: i.gb for i in est.items}
    return sum(items.get(n, 0.0) for n in STATE_ITEMS) * GIB / est.counts.total


@pytest.mark.parametrize(("sharding", "published_gb"), [("none", 120.0), ("zero1", 31.4), ("zero2", 16.6),
                                                        ("zero3", 1.9)])
def test_zero_paper_figure_1(book: Rulebook, sharding: str, published_gb: float) -> None:
    """Rajbhandari et al., ZeRO (arXiv:1910.02054), Figure 1: a 7.5B model on 64 GPUs with mixed-precision
    Adam (K = 12) holds 120 GB per GPU as a replica, 31.4 GB with P_os, 16.6 GB with P_os+g, 1.9 GB with
    P_os+g+p. The per-parameter bytes advisor counts per GPU, times 7.5B, give those figures."""
    per_param = _state_bytes_per_param(book, 64, sharding)
    assert round(per_param * 7.5e9 / 1e9, 1) == pytest.approx(published_gb, abs=0.05)


def test_each_stage_divides_what_the_registry_says(book: Rulebook) -> None:
    job = _job(book, 8)
    base = {i.name: i.gb for i in estimate(book, job, _params()).items}
    for sid, strategy in strategies().items():
        got = {i.name: i.gb for i in estimate(book, job, _params(sharding=sid)).items}
        for item, name in zip(("parameters", "gradients", "optimizer_states"), STATE_ITEMS, strict=True):
            ratio = base[name] / got[name]
            assert ratio == pytest.approx(8 if strategy.divides(item) else 1), (sid, name)


def test_gather_buffers_only_where_parameters_are_gathered(book: Rulebook) -> None:
    job = _job(book, 8)
    for sid, strategy in strategies().items():
        names = {i.name for i in estimate(book, job, _params(sharding=sid)).items}
        assert ("all-gathered layers (sharded parameters made whole)" in names) == strategy.gathers, sid


def test_offload_moves_states_to_cpu_ram(book: Rulebook) -> None:
    job = _job(book, 8)
    on_gpu = estimate(book, job, _params(sharding="zero3"))
    off = estimate(book, job, _params(sharding="zero3", offload=["optimizer"]))
    names = {i.name: i for i in off.items}
    assert "optimizer (fp32 master + states)" not in names and "gradients (16-bit)" not in names
    cpu = names["CPU RAM for offload (per node, not on the GPU)"]
    assert cpu.phase == "cpu"
    # 16 bytes per parameter (DeepSpeed's estimate) x the 1.5 buffer factor, one node of 8 GPUs
    assert cpu.gb * GIB == pytest.approx(off.counts.total * 16 * 1.5)
    assert off.total_gb < on_gpu.total_gb
    both = estimate(book, job, _params(sharding="zero3", offload=["optimizer", "parameters"]))
    assert "weights (16-bit)" not in {i.name for i in both.items} and both.total_gb < off.total_gb


@pytest.mark.parametrize(("optimizer", "per_param"), [("adamw_torch", 16), ("sgd", 8), ("adafactor", 8),
                                                      ("adamw_8bit", 10)])
def test_optimizer_offload_holds_the_runs_optimizer_states(book: Rulebook, optimizer: str, per_param: float) -> None:
    """Offload keeps the fp32 master weights and gradients (8 B) and the optimizer's own states in CPU RAM:
    AdamW's 8 make DeepSpeed's 16, SGD and Adafactor keep none, 8-bit AdamW 2."""
    job = _job(book, 8)
    off = estimate(book, job, _params(sharding="zero3", offload=["optimizer"], optimizer=optimizer))
    cpu = next(i for i in off.items if i.name == "CPU RAM for offload (per node, not on the GPU)")
    assert cpu.gb * GIB == pytest.approx(off.counts.total * per_param * 1.5)
    assert f"x {per_param:g} B ({optimizer}: 8 fp32 master + gradients" in cpu.detail


def test_parameter_offload_holds_full_fine_tunings_reference_model_in_cpu_ram(book: Rulebook) -> None:
    """TRL prepares DPO's frozen reference with the policy's ZeRO-3 config, offload_param kept
    (trl/models/utils.py prepare_deepspeed pops offload_optimizer only): its weights live in CPU RAM too."""
    cpu_item = "CPU RAM for offload (per node, not on the GPU)"
    for method, copies in (("sft", 1), ("dpo", 2)):
        job = api.job_facts(book, model="llama-3.1-8b", method=method, peft="full", gpu="h100", gpus=8,
                            detect_gpu=False)
        est = estimate(book, job, _params(sharding="zero3", offload=["parameters"]))
        items = {i.name: i for i in est.items}
        assert "reference model (frozen copy)" not in items  # not on the GPU
        # 2 B per 16-bit parameter x the 1.5 buffer factor, one node of 8 GPUs
        assert items[cpu_item].gb * GIB == pytest.approx(copies * est.counts.total * 2 * 1.5), method
    on_gpu = estimate(book, job, _params(sharding="zero3"))
    assert "reference model (frozen copy)" in {i.name for i in on_gpu.items}


def test_fsdp_offload_moves_everything(book: Rulebook) -> None:
    est = estimate(book, _job(book, 8), _params(sharding="fsdp_full", offload=["parameters"]))
    assert est.setup.offload == ("optimizer", "parameters")


def test_hybrid_divides_by_the_gpus_of_a_node(book: Rulebook) -> None:
    job = _job(book, 32)
    full = {i.name: i.gb for i in estimate(book, job, _params(sharding="fsdp_full")).items}
    hybrid = {i.name: i.gb for i in estimate(book, job, _params(sharding="fsdp_hybrid")).items}
    assert hybrid["weights (16-bit)"] == pytest.approx(full["weights (16-bit)"] * 4)


# -- configs ---------------------------------------------------------------------------------
def _write(path: Path, data: dict[str, Any]) -> Path:
    """A training config: its sharding keys and an LR (a file with no training key is refused as not a config)."""
    path.write_text(yaml.safe_dump({"learning_rate": 2e-5, **data}, sort_keys=False))
    return path


def _read(book: Rulebook, path: Path) -> dict[str, Any]:
    cfg, _ = read_config(path, book)
    return {k: cfg.values[k].value for k in ("sharding", "offload", "world_size") if k in cfg.values}


def test_deepspeed_json_beside_the_config(book: Rulebook, tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "z3.json").write_text(json.dumps(
        {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "none"}}}))
    cfg = _write(tmp_path / "sft.yaml", {"model_name_or_path": "meta-llama/Llama-3.1-8B", "deepspeed": "ds/z3.json"})
    assert _read(book, cfg) == {"sharding": "zero3", "offload": ["optimizer"]}


def test_deepspeed_dict_and_bundled_names(book: Rulebook, tmp_path: Path) -> None:
    inline = _write(tmp_path / "a.yaml", {"model_name_or_path": "x", "deepspeed": {"zero_optimization": {"stage": 2}}})
    assert _read(book, inline) == {"sharding": "zero2"}
    for name in ("deepspeed_configs/zero3_bf16_cpuoffload_all.json", "zero3_bf16_cpuoffload_all.json"):
        ax = _write(tmp_path / "ax.yml", {"base_model": "meta-llama/Llama-3.1-8B", "deepspeed": name})
        assert _read(book, ax) == {"sharding": "zero3", "offload": ["optimizer", "parameters"]}


def test_bundled_names_cite_the_trainers_files() -> None:
    for name, entry in bundled_deepspeed().items():
        assert entry.strategy in strategies() and set(entry.offload) <= set(strategies()[entry.strategy].offload)
        assert re.search(rf"(axolotl-ai-cloud/axolotl deepspeed_configs|hiyouga/LLaMA-Factory examples/deepspeed)/"
                         rf"{re.escape(name)} @ [0-9a-f]{{40}}", entry.source), entry.source


def test_llama_factory_names_its_example_deepspeed_files(book: Rulebook, tmp_path: Path) -> None:
    lf = _write(tmp_path / "lf.yaml", {"model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct", "stage": "sft",
                                       "finetuning_type": "full", "deepspeed": "examples/deepspeed/ds_z3_config.json"})
    assert _read(book, lf) == {"sharding": "zero3"}


@pytest.mark.parametrize(("named", "why"), [("nowhere/ds.json", "no such file"), ("/dev/zero", "not a regular file"),
                                             (".", "is a directory")])
def test_a_deepspeed_file_that_cannot_be_read_is_no_guess_of_no_sharding(book: Rulebook, tmp_path: Path, named: str,
                                                                       why: str) -> None:
    """The trainer cannot open it either; reading it as no sharding would judge memory at an unsharded run."""
    cfg_path = _write(tmp_path / "sft.yaml", {"model_name_or_path": "x", "deepspeed": named})
    with pytest.raises(ConfigError, match=rf"sft.yaml:\d+: key 'deepspeed': value '{re.escape(named)}': .*{why}"):
        read_config(cfg_path, book)


@pytest.mark.parametrize(("data", "want"), [
    ({"fsdp": "full_shard auto_wrap"}, {"sharding": "fsdp_full"}),
    ({"fsdp": "full_shard offload auto_wrap"}, {"sharding": "fsdp_full", "offload": ["parameters"]}),
    ({"fsdp": "hybrid_shard auto_wrap"}, {"sharding": "fsdp_hybrid"}),
    ({"fsdp": ["full_shard", "auto_wrap"], "fsdp_config": {"fsdp_offload_params": True}},
     {"sharding": "fsdp_full", "offload": ["parameters"]}),
    ({"fsdp_version": 2, "fsdp_config": {"offload_params": False, "reshard_after_forward": False}}, {"sharding": "zero2"}),
])
def test_fsdp_keys(book: Rulebook, tmp_path: Path, data: dict[str, Any], want: dict[str, Any]) -> None:
    cfg = _write(tmp_path / "c.yaml", {"model_name_or_path": "meta-llama/Llama-3.1-8B", **data})
    assert _read(book, cfg) == want


def test_accelerate_launch_configs(tmp_path: Path) -> None:
    # shaped like alignment-handbook's and open-r1's recipes/accelerate_configs
    z3 = _write(tmp_path / "zero3.yaml", {
        "compute_environment": "LOCAL_MACHINE", "distributed_type": "DEEPSPEED",
        "deepspeed_config": {"offload_optimizer_device": "none", "offload_param_device": "none", "zero_stage": 3},
        "num_machines": 1, "num_processes": 8})
    got = read_launch_config(z3).values
    assert (got["sharding"].value, got["world_size"].value) == ("zero3", 8)
    fsdp = _write(tmp_path / "fsdp.yaml", {"distributed_type": "FSDP", "num_processes": 16, "fsdp_config": {
        "fsdp_sharding_strategy": "FULL_SHARD", "fsdp_offload_params": True}})
    got = read_launch_config(fsdp).values
    assert (got["sharding"].value, got["offload"].value, got["world_size"].value) == ("fsdp_full", ["parameters"], 16)
    ddp = _write(tmp_path / "ddp.yaml", {"distributed_type": "MULTI_GPU", "num_processes": 4})
    assert read_launch_config(ddp).values["sharding"].value == "none"


# -- the command line ------------------------------------------------------------------------
def test_bad_sharding_flags_exit_2() -> None:
    for args in (["--sharding", "zero9"], ["--offload", "optimizer"], ["--sharding", "zero2", "--offload", "parameters"],
                 ["--offload", "disk"]):
        r = run_cli("memory", "--model", "llama-8b", "--method", "sft", "--peft", "full", "--gpu", "h100", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_what_would_fit_never_repeats_a_given_flag() -> None:
    r = run_cli("memory", "--model", "llama-8b", "--method", "sft", "--peft", "full", "--gpu", "h100", "--gpus", "8",
                "--format", "json")
    alternatives = json.loads(r.stdout)["alternatives"]
    assert alternatives and not any("--gpus 8" in a for a in alternatives)
    assert any("--sharding zero" in a for a in alternatives)


def test_70b_full_names_the_gpu_count_that_fits() -> None:
    r = run_cli("memory", "--model", "llama-3.1-70b", "--method", "sft", "--peft", "full", "--gpu", "h100",
                "--format", "json")
    alternatives = json.loads(r.stdout)["alternatives"]
    counted = [a for a in alternatives if "x H100" in a]
    assert counted and "--gpus 32 --sharding zero3" in counted[0]


def test_a_gpu_count_past_one_node_says_what_more_gpus_cannot_shrink() -> None:
    """70B full fine-tuning on 24 GB GPUs fits only on 1024 of them: the suggestion names the per-GPU floor
    (the long sequence's logits and activations, the gathered layer) that makes the count so large."""
    r = run_cli("memory", "--model", "llama-3.1-70b", "--method", "sft", "--peft", "full", "--gpu", "rtx4090",
                "--format", "json")
    counted = [a for a in json.loads(r.stdout)["alternatives"] if "x GeForce RTX 4090" in a]
    assert counted and "stays on each GPU at any count (logits and loss" in counted[0], counted
    within = run_cli("memory", "--model", "llama-3.1-70b", "--method", "sft", "--peft", "full", "--gpu", "h100",
                     "--format", "json")
    on_h100 = [a for a in json.loads(within.stdout)["alternatives"] if "x H100" in a]
    assert on_h100 and "stays on each GPU" not in on_h100[0]  # 32 GPUs: the sharded states still dominate


def test_launch_config_sets_the_world_size_in_recommend(tmp_path: Path) -> None:
    launch = _write(tmp_path / "zero3.yaml", {"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero_stage": 3},
                                             "num_processes": 8})
    r = run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--peft", "full", "--gpu", "h100",
                "--launch-config", str(launch), "--format", "json", "--no-detect")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["facts"]["gpu"]["count"] == 8
    params = out["parameters"]
    assert params["sharding"]["value"] == "zero3" and params["sharding"]["provenance"]["source"] == "config"
    eff = params["effective_batch_size"]["value"]
    micro, accum = params["micro_batch_size"]["value"], params["gradient_accumulation_steps"]["value"]
    assert micro * accum * 8 >= eff and out["memory"]["fits"] is True


def test_trl_config_with_zero3_beside_it_fits_8_h100(tmp_path: Path) -> None:
    """Issue 13's first 'done when': full fine-tuning of Llama-3.1-8B at 1 x 4096 tokens, ds_z3.json beside."""
    (tmp_path / "ds_z3.json").write_text(json.dumps({"zero_optimization": {"stage": 3}, "bf16": {"enabled": "auto"}}))
    cfg = _write(tmp_path / "sft.yaml", {"model_name_or_path": "meta-llama/Llama-3.1-8B", "learning_rate": 1e-5,
                                         "per_device_train_batch_size": 1, "gradient_accumulation_steps": 4,
                                         "max_length": 4096, "gradient_checkpointing": True, "deepspeed": "ds_z3.json"})
    r = run_cli("validate", str(cfg), "--gpu", "h100", "--gpus", "8", "--format", "json", "--no-detect")
    codes = {f["code"] for f in json.loads(r.stdout)["files"][0]["findings"]}
    assert not codes & {"VSQ002", "VSQ003"}, codes
    ddp = run_cli("validate", str(cfg), "--gpu", "h100", "--gpus", "8", "--sharding", "none", "--format", "json",
                  "--no-detect")
    assert "VSQ003" in {f["code"] for f in json.loads(ddp.stdout)["files"][0]["findings"]}  # the flag beats the file


def test_memory_says_how_the_gpus_share_the_job() -> None:
    base = ("memory", "--model", "llama-8b", "--method", "sft", "--peft", "full", "--gpu", "h100", "--gpus", "8",
            "--format", "json")
    assert "DDP" in json.loads(run_cli(*base).stdout)["parallel"]
    sharded = json.loads(run_cli(*base, "--sharding", "zero3").stdout)
    assert "ZeRO stage 3" in sharded["parallel"] and sharded["fits"] is True
    assert sharded["parameters"]["sharding"] == "zero3" and sharded["provenance"]["sharding"]["source"] == "flag"


def test_each_sharding_alternative_holds_when_run_as_it_says(book: Rulebook) -> None:
    """The flags an alternative names, given back, make the job fit (the claim is re-estimated, not guessed)."""
    for model, gpus in (("llama-3.1-8b", 8), ("llama-3.1-70b", 1)):
        rec = api.recommend(book=book, model=model, method="sft", peft="full", gpu="h100", gpus=gpus, detect_gpu=False)
        assert rec.memory is not None and not rec.memory.fits
        sharded = [a for a in rec.memory.alternatives if "--sharding" in a]
        assert sharded, rec.memory.alternatives
        for text in sharded:
            words = text.rsplit("(", 1)[1].rstrip(")").split()
            flags = dict(zip(words[::2], words[1::2], strict=True))
            offload = flags.get("--offload", "")
            there = api.recommend(book=book, model=model, method="sft", peft="full", gpu="h100",
                                  gpus=int(flags.get("--gpus", gpus)), detect_gpu=False,
                                  flags={"--sharding": flags["--sharding"],
                                         **({"--offload": offload.split(",")} if offload else {})})
            assert there.memory is not None and there.memory.fits, text


def test_hybrid_offload_holds_a_full_copy_in_each_nodes_cpu_ram(book: Rulebook) -> None:
    """Hybrid sharding replicates the sharded state across nodes: each node's CPU RAM holds all of it
    (FSDP offloads parameters with the optimizer: 16 + 2 bytes per parameter, x 1.5), where full
    sharding over 4 nodes holds a quarter."""
    job = _job(book, 32)
    cpu = "CPU RAM for offload (per node, not on the GPU)"
    hybrid = {i.name: i for i in estimate(book, job, _params(sharding="fsdp_hybrid", offload=["optimizer"])).items}
    full = {i.name: i for i in estimate(book, job, _params(sharding="fsdp_full", offload=["optimizer"])).items}
    total = estimate(book, job, _params()).counts.total
    assert hybrid[cpu].gb * GIB == pytest.approx(total * 18 * 1.5)
    assert full[cpu].gb * GIB == pytest.approx(total * 18 * 1.5 / 4)
    assert "on every node" in hybrid[cpu].detail and "/ 4 node(s)" in full[cpu].detail


def test_an_fsdp_offload_alternative_names_everything_it_offloads(book: Rulebook) -> None:
    """FSDP's CPU offload moves parameters with the optimizer states: the alternative says both."""
    from advisor.memory.fit import fit

    job = _job(book, 32, model="llama-3.1-70b")
    f = fit(book, job, _params(sharding="fsdp_hybrid"))
    assert f is not None and not f.fits
    offload = next(a for a in f.alternatives if "offload:" in a)
    assert offload.startswith("FSDP hybrid shard with optimizer and parameters offload:"), offload
