"""Random-number-generator states, captured into a checkpoint and put back on resume.

In: nothing (``capture_rng_state`` reads the process's generators) or a captured state
(``restore_rng_state``). Out: a dict that ``torch.load(weights_only=True)`` reads back —
tensors, ints, strings, lists, tuples, no NumPy arrays or other pickled objects — holding
torch's CPU state, one state per CUDA device (when CUDA is initialised), Python's ``random``
state and NumPy's legacy global state when NumPy has been imported.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import CheckpointError


def capture_rng_state() -> dict[str, Any]:
    """The current states of every generator a training loop draws from."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else [],
        "python": [version, list(internal), gauss],
    }
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        name, keys, pos, has_gauss, cached = numpy.random.get_state(legacy=True)
        state["numpy"] = [str(name), torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(cached)]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the generators back to ``state`` (from ``capture_rng_state``); ``CheckpointError`` if it is malformed."""
    try:
        torch.set_rng_state(state["torch"])
        cuda = list(state.get("cuda") or [])
        if cuda and torch.cuda.is_available():
            if len(cuda) > torch.cuda.device_count():
                raise CheckpointError(
                    f"the checkpoint holds RNG states of {len(cuda)} CUDA devices, this machine has "
                    f"{torch.cuda.device_count()}"
                )
            for index, cuda_state in enumerate(cuda):
                torch.cuda.set_rng_state(cuda_state, index)
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(x) for x in internal), gauss))
        saved_numpy = state.get("numpy")
        numpy = sys.modules.get("numpy")
        if saved_numpy is not None and numpy is not None:
            name, keys, pos, has_gauss, cached = saved_numpy
            numpy.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"the checkpoint's RNG state is malformed: {type(err).__name__}: {err}") from None


__all__ = ["capture_rng_state", "restore_rng_state"]
