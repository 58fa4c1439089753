"""Pydantic model of the ``distributed:`` section (contract section 8); torch-free.

In: the plain data under ``distributed``. Out: a ``DistributedSpec`` (strategy, shard patterns,
``reshard_after_forward``, ``mixed_precision``). Only structure and scalar types are checked
here; whether a pattern matches a module, or a dtype suits the device, is decided by
``netspec.distributed`` once the model and the process group exist.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

STRATEGIES = ("fsdp", "ddp")
Precision = Literal["float32", "float16", "bfloat16", "float64"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MixedPrecisionSpec(_Strict):
    """FSDP2's ``MixedPrecisionPolicy``: the dtype parameters are all-gathered (and computed) in,
    and the dtype gradients are reduce-scattered in. Unset means "the parameters' own dtype"."""

    param_dtype: Precision | None = None
    reduce_dtype: Precision | None = None


class DistributedSpec(_Strict):
    """``distributed: {strategy, shard, reshard_after_forward, mixed_precision}``."""

    strategy: Literal["fsdp", "ddp"] = "fsdp"
    shard: list[StrictStr] = Field(default_factory=list)
    reshard_after_forward: StrictBool = True
    mixed_precision: MixedPrecisionSpec | None = None
