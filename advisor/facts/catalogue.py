"""The closed vocabulary of facts a rule may read. Rules naming anything else fail to load."""

from __future__ import annotations

from advisor.registries import completion_capped_method_ids, format_ids, generating_method_ids, method_ids

MODEL_FACTS: dict[str, str] = {
    "name": "the model's registry id or the path of its config.json",
    "family": "architecture family id (rules/families.yaml), 'unknown' when not calibrated",
    "model_type": "config.json model_type",
    "calibrated": "true when the seed tables name this family",
    "params_b": "total parameters, billions (computed from the architecture)",
    "active_params_b": "parameters active per token, billions (equals params_b for dense models)",
    "hidden_size": "hidden size",
    "num_layers": "decoder layers",
    "num_heads": "attention heads",
    "num_kv_heads": "key/value heads",
    "head_dim": "per-head dimension",
    "intermediate_size": "MLP intermediate size (per expert for MoE)",
    "vocab_size": "vocabulary size",
    "max_position_embeddings": "context length in config.json",
    "tie_word_embeddings": "lm_head shares the input embedding",
    "is_moe": "mixture of experts",
    "num_experts": "experts per MoE layer",
    "experts_per_token": "experts active per token",
    "attention_modules": "the family's attention linear layers (rules/families.yaml)",
    "mlp_modules": "the family's MLP / expert linear layers (rules/families.yaml)",
    "linear_modules": "attention_modules + mlp_modules: every linear layer LoRA can adapt",
}

GPU_FACTS: dict[str, str] = {
    "name": "GPU name (registry id or as nvidia-smi reports it)",
    "memory_gb": "memory of one GPU as the vendor states it, GB (the seed's batch table is keyed on it; "
    "for a detected GPU the registry lacks, nvidia-smi's memory.total in decimal GB)",
    "usable_gib": "memory of one GPU as the board reports it, GiB (nvidia-smi memory.total MiB / 1024; "
    "--gpu-mem); the memory model's capacity",
    "count": "number of GPUs that train on different data (the data-parallel world: processes over a config's "
    "tensor x context parallel sizes)",
    "processes": "number of GPUs (training processes): --gpus, a launch config's num_processes, the job comment's "
    "gpus=N, or the least an Axolotl device mesh runs on",
    "count_assumed": "nothing described the GPUs (no --gpu, --gpu-mem or --gpus, no launch config or count in the file, none "
    "detected): count is 1 by default",
    "total_memory_gb": "memory_gb x processes",
    "bf16": "the GPU computes in bfloat16 (compute capability 8.0 or newer)",
}

TASK_FACTS: dict[str, str] = {
    "method": " | ".join(method_ids()),
    "peft": "lora | qlora | full",
    "variant": "the method's loss variant (rules/variants.yaml: ipo, simpo, orpo, kto, dr_grpo, dapo, rloo, ...); "
    "the method's own id when none is given",
    "is_rl": f"method is {' or '.join(generating_method_ids())}",
    "completion_cap": f"method is {' or '.join(completion_capped_method_ids())}: max_seq_length is the completion cap, "
    "and the prompt comes on top of it (rules/registry/methods.yaml completion_cap)",
    "adapter": "peft is lora or qlora",
    "dataset_size": "training examples (prompts for grpo/ppo, samples per cycle for raft)",
    "seq_len": "sequence length asked for on the command line",
    "cycles": "RAFT cycles",
    "use_case": "short-qa | chat | long-documents | code",
    "situation": "DPO situation, when given: new-domain | safety | strong-baseline | weak-baseline",
    "sft_learning_rate": "the learning rate the SFT stage used (RAFT starts from it)",
    "lr_strategy": "RAFT per-cycle LR strategy asked for (advisor schedule --strategy): constant | exponential | manual",
    "config_format": f"advisor validate: the format of the config being checked ({', '.join(format_ids())})",
    "config_method": "advisor validate: the method a config names when the rulebook has no rules for it (orpo, kto, ...)",
    "config_model_where": "advisor validate: where a config that names no model (and no --model) would name it "
    "(\"Axolotl configs name it by 'base_model'\"); unset when a model is named",
    "optimizer_lr_rules": "advisor validate: the config's optimizer is one the LR rules cover (rules/registry/optimizers.yaml "
    "lr_rules); unset when the config names none",
    "config_mesh": "advisor validate: an Axolotl device mesh the config states, in its keys "
    "('dp_shard_size 2 x context_parallel_size 2 x tensor_parallel_size 2 = 8 GPUs'); unset when it states none",
    "config_mesh_gpus": "advisor validate: the least GPUs that mesh runs on, the product of its sizes",
    "config_mesh_exact": "advisor validate: the mesh states both dp_shard_size and dp_replicate_size, so it runs on "
    "exactly config_mesh_gpus GPUs (else on any multiple)",
    "config_read_as": "advisor validate: never set; VCF003's findings come from the readers (a value read as the trainer "
    "reads it)",
}

MEMORY_FACTS: dict[str, str] = {
    "max_micro_batch": "the largest micro-batch the memory model fits under the safety margin (0: not even 1 fits)",
    "fits": "micro-batch 1 fits the GPU under the safety margin",
    "peak_gb": "predicted peak GPU memory at the job's micro-batch (GiB, CUDA context included)",
    "peak_gb_batch1": "predicted peak GPU memory at micro-batch 1 (GiB)",
    "usable_gb": "gpu.usable_gib less the safety margin (GiB)",
    "seq_len": "the sequence length the estimate assumes (tokens)",
    "alternatives": "what would fit micro-batch 1 when nothing does, each checked by the estimate ('; '-joined; "
    "unset when none does or when micro-batch 1 fits)",
    "checkpointing_fits": "micro-batch 1 fits with gradient checkpointing switched on (unset when it is on already or "
    "micro-batch 1 fits without it)",
    "fitting_seq_len": "the longest halving of the sequence, down to rules/memory.yaml fit-min-seq-len, at which "
    "micro-batch 1 fits (unset when micro-batch 1 fits, none does, or the user gave the length)",
}

LOG_FACTS: dict[str, str] = {
    "loss": "training loss per logged step (list)",
    "grad_norm": "gradient norm before clipping per logged step (list)",
    "learning_rate": "learning rate per logged step (list)",
    "eval_loss": "evaluation loss per evaluation (list)",
    "max_grad_norm": "the clipping threshold of the run (--max-grad-norm, or the config's)",
    "marked": "evidence only: the points the sign's `mark` flags, as the log places them ('steps 7, 14'; "
              "'log entries 6, 13' where the log states no steps)",
    "cycle_score": "per-cycle metric, higher is better (verification rate; eval loss negated) (list)",
    "cycle_metric": "the per-cycle metric's name",
    "cycle_name": "the cycles' entries in the --cycles-dir directory, in cycle order (list)",
    "distinct_2": "distinct bigrams / all bigrams over the generated samples of the last cycle",
    "distinct_2_first": "distinct bigrams / all bigrams over the first cycle's samples",
    "peak_memory_gb": "peak memory per step, GiB (CUDA: max_memory_reserved; CPU probe: peak RSS above the runtime's) (list)",
    "memory_capacity_gb": "memory the run may use, GiB (the GPU's, or the probe's --max-memory cap)",
    "memory_margin": "the memory model's safety margin, a fraction of capacity (rules/memory.yaml safety-margin)",
    "predicted_memory_gb": "the memory model's predicted peak reserved memory for the probed shape, GiB",
    # The series TRL's DPOTrainer / GRPOTrainer log (their keys with '/' as '_': advisor.telemetry.series_name)
    "rewards_chosen": "DPO: beta x the policy-to-reference log-ratio of the chosen response, per step (list)",
    "rewards_rejected": "DPO: the same for the rejected response (list)",
    "rewards_margins": "DPO: chosen minus rejected reward, per step (list)",
    "rewards_accuracies": "DPO: share of pairs whose chosen reward beats the rejected one, per step (list)",
    "reward": "GRPO: mean total reward of the step's completions (list)",
    "reward_std": "GRPO: standard deviation of the step's rewards (list)",
    "frac_reward_zero_std": "GRPO: share of the step's groups whose rewards all agree (no learning signal) (list)",
    "kl": "GRPO: mean per-token KL of the policy to the reference, logged when beta > 0 (list)",
    "entropy": "mean per-token entropy of the policy over the step's completions (list)",
    "completions_mean_length": "GRPO: mean completion length in tokens (list)",
    "completions_clipped_ratio": "GRPO: share of completions truncated at max_completion_length (list)",
}

NAMESPACES: dict[str, dict[str, str]] = {"model": MODEL_FACTS, "gpu": GPU_FACTS, "task": TASK_FACTS, "log": LOG_FACTS,
                                         "memory": MEMORY_FACTS}

# The kind of value each fact holds, so that a rule's condition is checked against it when the rule
# loads (lt / between order numbers; eq / in take values of the fact's kind). A fact not named here
# is a word.
NUMBER, FLAG, LIST, WORD = "number", "flag", "list", "word"
_KINDS: dict[str, tuple[str, ...]] = {
    NUMBER: ("model.params_b", "model.active_params_b", "model.hidden_size", "model.num_layers", "model.num_heads",
             "model.num_kv_heads", "model.head_dim", "model.intermediate_size", "model.vocab_size",
             "model.max_position_embeddings", "model.num_experts", "model.experts_per_token",
             "gpu.memory_gb", "gpu.usable_gib", "gpu.count", "gpu.processes", "gpu.total_memory_gb",
             "task.dataset_size", "task.seq_len", "task.cycles", "task.sft_learning_rate",
             "memory.max_micro_batch", "memory.peak_gb", "memory.peak_gb_batch1", "memory.usable_gb",
             "memory.seq_len", "memory.fitting_seq_len", "log.max_grad_norm", "log.distinct_2", "log.distinct_2_first",
             "log.memory_capacity_gb", "log.memory_margin", "log.predicted_memory_gb", "task.config_mesh_gpus"),
    FLAG: ("model.calibrated", "model.tie_word_embeddings", "model.is_moe", "gpu.bf16", "gpu.count_assumed", "task.is_rl",
           "task.completion_cap", "task.adapter", "task.optimizer_lr_rules", "task.config_mesh_exact", "memory.fits"),
    LIST: ("model.attention_modules", "model.mlp_modules", "model.linear_modules", "log.cycle_name",
           *(f"log.{name}" for name, text in LOG_FACTS.items() if text.endswith("(list)"))),
}
FACT_KINDS: dict[str, str] = {name: kind for kind, names in _KINDS.items() for name in names}


def fact_kind(name: str) -> str:
    """number, flag, list or word: what a catalogue fact (``model.params_b``) holds."""
    return FACT_KINDS.get(name, WORD)

# The rulebook parameter each command-line flag pins (recommend, memory, probe and sweep read this;
# provenance.PRECEDENCE puts the flag above --set, the config and the rules).
FLAG_PARAMETERS: dict[str, str] = {
    "--seq-len": "max_seq_length",
    "--micro-batch": "micro_batch_size",
    "--accumulation": "gradient_accumulation_steps",
    "--lr": "learning_rate",
    "--sharding": "sharding",
    "--offload": "offload",
}
