"""Where and how this process computes: torchrun's environment, the device, precision, and batches on it.

    runtime = init_runtime(no_cuda=False, fp16=True, bf16=False)   # torchrun env or one process
    runtime = init_runtime(deterministic=True)                      # --deterministic: same bits every run
    feed = ModelFeed(model, runtime)                                # inspects model.forward once
    outputs = model(**feed(features.batch(indices)))

On CUDA, float32 matmuls use TF32 (torch.backends.cuda.matmul.allow_tf32: about 8x the float32
throughput of an A100/H100 at 10 mantissa bits, which fine-tuning does not notice; the same choice
as the HF Trainer's --tf32), batches are copied from pinned memory without blocking, and the
process group is NCCL. On the CPU: gloo, and none of that.
"""

import dataclasses
import datetime
import inspect
import os
import random

import numpy as np
import torch
import torch.distributed as dist


@dataclasses.dataclass
class Runtime:
    """Where and how this process computes: device, rank, precision."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype = None  # None: float32, no autocast

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def cuda(self):
        return self.device.type == "cuda"

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)


def use_deterministic_algorithms():
    """--deterministic: only kernels that give the same bits every time (torch raises, naming the op, where one
    has none), cuBLAS with a fixed workspace (its reductions are otherwise split by workspace size: CUDA's
    reproducibility notes ask for CUBLAS_WORKSPACE_CONFIG=:4096:8 before the first cuBLAS call), and no cuDNN
    autotuning (which may pick another algorithm in the next process). SDPA's flash and memory-efficient
    backward kernels have deterministic modes that this switches on (torch's randomness notes)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def init_runtime(no_cuda=False, fp16=False, bf16=False, local_rank=-1, deterministic=False):
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), join the process group, pick the device.

    Backend nccl on CUDA, gloo on CPU. One process without torchrun needs nothing set."""
    if deterministic:
        use_deterministic_algorithms()  # before the first CUDA call
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", local_rank if local_rank >= 0 else 0))
    use_cuda = torch.cuda.is_available() and not no_cuda
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if world_size > 1 and not dist.is_initialized():
        # Rank 0 builds the feature cache while the others wait at a barrier: about 20 minutes for
        # the guide's NQ subset, so the collective timeout (10 minutes by default on NCCL) is raised.
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None,
                                timeout=datetime.timedelta(hours=2))
    amp_dtype = torch.float16 if fp16 else torch.bfloat16 if bf16 else None
    return Runtime(device=device, rank=rank, world_size=world_size, local_rank=local_rank, amp_dtype=amp_dtype)


def barrier(runtime):
    if runtime.distributed:
        dist.barrier()


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


class ModelFeed:
    """Numpy batches -> tensors on the device, only the inputs model.forward accepts (DistilBERT has no
    token_type_ids). The signature is read once, not at every micro-batch."""

    def __init__(self, model, runtime, lang_id=0):
        model = getattr(model, "module", model)  # DDP
        model = getattr(model, "_orig_mod", model)  # torch.compile
        self.accepted = frozenset(inspect.signature(model.forward).parameters)
        self.device = runtime.device
        self.pin = runtime.cuda  # pinned host memory lets the copy overlap with compute
        self.xlm_lang = lang_id if "langs" in self.accepted and getattr(model.config, "model_type", "") == "xlm" else None

    def __call__(self, batch):
        tensors = {}
        for name, value in batch.items():
            if name in self.accepted:
                tensor = torch.as_tensor(value, dtype=torch.long)
                tensors[name] = (tensor.pin_memory() if self.pin else tensor).to(self.device, non_blocking=True)
        if self.xlm_lang is not None:
            tensors["langs"] = torch.full_like(tensors["input_ids"], self.xlm_lang)
        return tensors
