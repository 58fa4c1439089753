"""Stage 5: build — an inferred tree -> the real model on the target device.

In: an ``Inferred`` (every argument final, Graph statements compiled), the ``Source`` (for
locations), a device and a dtype. Out: the ``nn.Module`` with every weight allocated on the
device. On a real device the memory the model needs (counted on meta tensors during
inference) is checked first, so a model that cannot fit fails before anything is allocated.
Weight values follow torch's global RNG: seeding is the caller's (``api.build``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..frontend.source import Source
from .construct import build_tree, copy_graphs
from .infer import Inferred
from .memory import check_fits


def build_model(inferred: Inferred, source: Source, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
    """The model ``inferred`` describes, built on ``device`` (its own copy of every fx graph)."""
    if device.type != "meta":
        check_fits(inferred.tensors, device, dtype, source)
    return build_tree(inferred.root, device, dtype, copy_graphs(inferred.graphs), inferred.lazy_inputs)
