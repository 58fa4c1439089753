"""The headline figures of a validated spec, measured on meta tensors (nothing allocated).

In: a ``Spec`` (and a target device for the memory check). Out: ``Figures`` — parameters
(tied ones once), MACs per sample (when the spec has an ``input``),
bytes of parameters and buffers, and the fingerprint; ``fits(spec, device)`` raises the same
``SpecError`` ``build`` would when the weights do not fit the device. Used by ``diff`` and
``sweep``; the numbers are the ones ``netspec build`` prints in its summary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from .compiler.infer import DTYPES
from .compiler.memory import check_fits, sizes_in_bytes
from .spec import Spec
from .summary import summarize


@dataclass(frozen=True)
class Figures:
    parameters: int
    macs: int | None  # per sample; None without input.shape
    weight_bytes: int  # parameters and buffers
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def figures(spec: Spec) -> Figures:
    """Parameters, MACs and weight bytes of ``spec``'s model, from its meta model and inferred shapes."""
    meta = spec.inferred.meta_model
    inp = spec.document.input
    summary = summarize(
        meta,
        lambda: meta,
        spec.name,
        tuple(inp.shape) if inp else None,
        DTYPES[inp.dtype] if inp else torch.float32,
        depth=0,
        calls=spec.inferred.calls,
    )
    weight_bytes = sum(sizes_in_bytes(spec.inferred.tensors, None).values())
    return Figures(summary.total_params, summary.total_macs, weight_bytes, spec.fingerprint)


def fits(spec: Spec, device: torch.device | str, dtype: torch.dtype | None = None) -> int:
    """Bytes the weights need on ``device``; ``SpecError`` when they exceed what it has free (meta: always fits)."""
    device = torch.device(device)
    if device.type == "meta":
        return sum(sizes_in_bytes(spec.inferred.tensors, dtype).values())
    return check_fits(spec.inferred.tensors, device, dtype, spec.source)


__all__ = ["Figures", "figures", "fits"]
