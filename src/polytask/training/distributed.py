"""Several processes (DDP through HF Accelerate): the launch check, the Accelerator, and per-process state.

Launch (see docs/training.md): on GPUs ``accelerate launch --multi_gpu --num_processes N -m polytask.cli train
CONFIG`` (or an ``accelerate config`` file, also for several machines); on CPUs ``torchrun --nproc_per_node N -m
polytask.cli train CONFIG`` (gloo). ``accelerate launch --cpu --num_processes N`` starts a single process unless an
MPI hostfile is given, so it is refused with that explanation rather than silently training alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from polytask.errors import PolytaskError

MPI_RANK = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")


def check_launch() -> None:
    """Refuse a launch that asked for several CPU processes but got one (Accelerate's simple launcher)."""
    env = os.environ
    asked_cpu = env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if asked_cpu and "MASTER_ADDR" in env and "WORLD_SIZE" not in env and not any(k in env for k in MPI_RANK):
        raise PolytaskError(
            "`accelerate launch --cpu --num_processes N` starts ONE process unless MPI is set up (its multi-CPU mode "
            "needs --mpirun_hostfile): training would run alone. On CPUs launch with "
            "`torchrun --nproc_per_node N -m polytask.cli train CONFIG`; on GPUs with "
            "`accelerate launch --multi_gpu --num_processes N -m polytask.cli train CONFIG`.")


def make_accelerator(precision: str, log_with: list[Any] | None = None) -> Any:
    """An Accelerator for ``precision`` (fp32/bf16) that runs DDP on CPUs too (gloo) when launched by torchrun, with
    unused parameters allowed (a step trains the heads of the tasks it sees, not the others). ``log_with``:
    Accelerate tracker objects (polytask.trackers), started and fed on the main process only.

    Accelerate keeps its settings in a process-wide singleton; a second run in the same process (baselines,
    benchmarks, notebooks) with another precision must reset it. The process group (PartialState) is kept."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState, GradientState

    check_launch()
    mixed = "bf16" if precision == "bf16" else "no"
    if AcceleratorState._shared_state and AcceleratorState._shared_state.get("_mixed_precision") != mixed:
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    accelerator = Accelerator(mixed_precision=mixed, cpu=not torch.cuda.is_available(), log_with=log_with or None,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    kind = str(accelerator.distributed_type).rsplit(".", 1)[-1]
    if kind in ("FSDP", "DEEPSPEED", "MEGATRON_LM", "XLA"):
        raise PolytaskError(f"distributed type {kind} is not supported: polytask trains with DDP (several GPUs, "
                            "several machines); an encoder too large for one device is not supported yet "
                            "(checkpoints and evaluation read the whole model on every process)")
    return accelerator


@dataclass
class Shard:
    """This process's share of evaluation work and how to collect everyone's: ``gather`` takes a list from each
    process and returns the concatenation, in rank order, on every process."""

    rank: int
    world: int
    gather: Callable[[list[Any]], list[Any]]


def shard_of(accelerator: Any) -> Shard | None:
    if accelerator.num_processes < 2:
        return None
    from accelerate.utils import gather_object

    return Shard(accelerator.process_index, accelerator.num_processes, gather_object)


def rng_state() -> dict[str, torch.Tensor]:
    """This process's torch RNG state (CPU, and every CUDA device when there is one)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda.{i}"] = s
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = sorted((k for k in state if k.startswith("cuda.")), key=lambda k: int(k.split(".")[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state[k] for k in cuda])


def gather_states(accelerator: Any, state: Any) -> list[Any]:
    """Every process's ``state`` (picklable by torch.distributed for the transfer only), in rank order."""
    if accelerator.num_processes < 2:
        return [state]
    from accelerate.utils import gather_object

    return gather_object([state])
