"""Processes: one per GPU under ``torchrun`` (nccl), or several CPU processes in tests (gloo).

Data parallelism is DDP (a full replica per process, gradients all-reduced) or FSDP2 (``fully_shard``:
parameters, gradients and optimizer state sharded over the processes) when a model does not fit one device.
Both average the gradients over the processes.
"""
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` (or a test's spawn) describes in the environment.

    One process per GPU with nccl; on CPU, gloo. Without ``WORLD_SIZE`` this is a single process.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this machine has no CUDA GPU (use --device cpu)")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, torch_device)


def close_distributed():
    """Leave the process group together. Every rank first waits at a barrier: a gloo rank that tears the group
    down while its peer's last collective is still completing can abort (SIGABRT, "terminate called without
    an active exception", seen in CI after an FSDP run's final state-dict gather). The barrier makes it rarer,
    not impossible (seen again with it, 2026-12-05): the abort is in torch's teardown, after the work is done,
    and the 2-process tests accept it only then (tests/train/test_training.py, ``_run_ddp``)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, op=None) -> torch.Tensor:
    """Sum (or ``op``) over data-parallel ranks in place; a no-op in a single process."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return tensor


def global_max(value: float, device) -> float:
    """The largest ``value`` over the ranks (every rank gets it): decisions that all ranks must take together."""
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.item()


def barrier():
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def wrap_model(model, info: DistInfo, parallel: str = "ddp", compile: bool = False):
    """Place ``model`` on its device and make it data-parallel; returns the module to call in training.

    ``parallel="ddp"`` keeps a full replica per process and all-reduces gradients. ``"fsdp"`` (FSDP2,
    ``fully_shard``) shards parameters, gradients and optimizer state over the processes, one decoder layer
    at a time. ``compile`` runs ``torch.compile`` on the model in place (state-dict keys stay unchanged).
    """
    model.to(info.device)
    if compile:
        model.compile()
    if not info.distributed:
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel
        moe = getattr(getattr(model, "config", None), "is_moe", False)
        # Experts that no token of a micro-batch picked get no gradient there: DDP must be told.
        return DistributedDataParallel(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
                                       find_unused_parameters=moe)
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    raise ValueError(f"parallel={parallel!r}: expected 'ddp' or 'fsdp'")


def unwrap(model):
    """The plain ``Qwen3ForCausalLM`` inside a DDP wrapper (FSDP2 and compile keep the module itself)."""
    return model.module if hasattr(model, "module") else model


def gathered_model(model, info: DistInfo):
    """On rank 0, a CPU fp32 copy of the whole trained model (FSDP shards gathered); None elsewhere."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from ..model import Qwen3ForCausalLM
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not info.is_main:
        return None
    copy = Qwen3ForCausalLM(unwrap(model).config)
    copy.load_state_dict({k: v.float() for k, v in state.items()})
    return copy
