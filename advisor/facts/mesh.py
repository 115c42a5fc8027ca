"""Axolotl's device mesh as a config states it: how many GPUs one copy of the run takes, which of them
train on different data, and which shard the training state.

Axolotl builds accelerate's ParallelismConfig from five sizes (utils/distributed.py
_get_parallel_config_kwargs): expert, tensor and context parallel take their share of the world first;
then dp_shard_size and dp_replicate_size, one of which, when left out, takes what remains. So a file that
states both data-parallel sizes fixes the world; otherwise it fixes the least GPUs it runs on, and more
GPUs (a multiple) replicate or shard it further. What each size does to memory is the memory model's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# The mesh's parameters (rules/parameters.yaml, group distributed), in the order a description names them
SIZES = ("dp_shard_size", "dp_replicate_size", "expert_parallel_size", "context_parallel_size",
         "tensor_parallel_size")


def _size(values: Mapping[str, Any], name: str) -> int | None:
    value = values.get(name)
    return None if value is None else max(1, int(value))


@dataclass(frozen=True)
class DeviceMesh:
    tensor: int = 1
    context: int = 1
    expert: int = 1
    shard: int | None = None  # None: Axolotl fills it with the GPUs left
    replicate: int | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> DeviceMesh:
        """From parameter values (a config's, or the memory model's params)."""
        return cls(tensor=_size(values, "tensor_parallel_size") or 1, context=_size(values, "context_parallel_size") or 1,
                   expert=_size(values, "expert_parallel_size") or 1, shard=_size(values, "dp_shard_size"),
                   replicate=_size(values, "dp_replicate_size"))

    @property
    def stated(self) -> bool:
        return self.size > 1

    @property
    def model_parallel(self) -> int:
        """GPUs that train on the same data: tensor x context parallel (Axolotl's normalize_config divides
        the world by both for the batch)."""
        return self.tensor * self.context

    @property
    def size(self) -> int:
        """The least GPUs the mesh runs on: the product of the sizes it states."""
        return self.expert * self.tensor * self.context * (self.shard or 1) * (self.replicate or 1)

    @property
    def exact(self) -> bool:
        """Both data-parallel sizes given: Axolotl fills nothing, so the world is exactly the mesh."""
        return self.shard is not None and self.replicate is not None

    def words(self, key: Callable[[str], str] = str) -> str:
        """'dp_shard_size 2 x context_parallel_size 2 x tensor_parallel_size 2 = 8 GPUs', each size by ``key``
        (a config's own key for the parameter)."""
        stated = {"dp_shard_size": self.shard, "dp_replicate_size": self.replicate,
                  "expert_parallel_size": self.expert if self.expert > 1 else None,
                  "context_parallel_size": self.context if self.context > 1 else None,
                  "tensor_parallel_size": self.tensor if self.tensor > 1 else None}
        return " x ".join(f"{key(name)} {stated[name]}" for name in SIZES if stated[name] is not None) + \
            f" = {self.size} GPUs"

    def runs_on(self, gpus: int) -> bool:
        """Whether Axolotl can lay the mesh over ``gpus`` processes (else ParallelismConfig's total_size
        does not match num_processes, or _get_parallel_config_kwargs finds world left over)."""
        return gpus == self.size if self.exact else gpus % self.size == 0

    def shard_group(self, data_parallel: int) -> int:
        """GPUs one FSDP copy shards its state over: dp_shard x context parallel (accelerate's dp_shard_cp
        mesh, expert parallel inside dp_shard), the replicas (HSDP's dp_replicate) each holding a copy."""
        if self.replicate is not None:
            replicas = self.replicate
        elif self.shard is not None:
            replicas = max(1, data_parallel // (self.shard * self.expert))
        else:
            replicas = 1
        return max(1, data_parallel // replicas) * self.context
