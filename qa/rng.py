"""Every random generator's state, in a form `torch.load(weights_only=True)` accepts (plain ints and lists).

    state = capture_rng_state("all")      # python random, numpy's global generator, torch CPU, CUDA
    restore_rng_state(state)

A checkpoint stores one such dict per rank (rng_state_{rank}.pth) so that a resumed run draws the
same dropout masks as an uninterrupted one.
"""

import logging
import random

logger = logging.getLogger(__name__)


def capture_rng_state(cuda_devices="all"):
    """Every generator's state: python `random`, numpy's global one, torch CPU, and CUDA.

    cuda_devices: "all" (single process) or "current" (one device per rank under torchrun: asking
    for all would create a CUDA context on every GPU from every rank)."""
    import numpy as np
    import torch

    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": [int(x) for x in internal], "gauss_next": gauss_next},
        "numpy": {
            "kind": str(kind), "keys": [int(x) for x in keys], "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
        "cuda_devices": cuda_devices,
    }
    if torch.cuda.is_available():
        if cuda_devices == "all":
            state["cuda"] = list(torch.cuda.get_rng_state_all())
        else:
            state["cuda"] = [torch.cuda.get_rng_state()]
    return state


def restore_rng_state(state):
    """Set every generator from a `capture_rng_state()` dict."""
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], np.array(npy["keys"], dtype=np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if not cuda:
        return
    if not torch.cuda.is_available():
        logger.warning("the checkpoint has CUDA generator states but CUDA is not available: not restored")
    elif state.get("cuda_devices") == "current":
        torch.cuda.set_rng_state(cuda[0])
    else:
        count = min(len(cuda), torch.cuda.device_count())
        if count != len(cuda) or count != torch.cuda.device_count():
            logger.warning("CUDA generator states saved for %d devices, %d visible now: restoring %d",
                           len(cuda), torch.cuda.device_count(), count)
        for device in range(count):
            torch.cuda.set_rng_state(cuda[device], device)
