"""What a Graph statement may use: the allow-lists of functions, tensor methods and operators.

In: nothing (tables built from torch at import). Out: ``FUNCTIONS`` (statement name ->
torch or torch.nn.functional callable), ``TENSOR_METHODS``, ``TENSOR_ATTRIBUTES``, the
operator tables, ``CONSTANTS``, ``route`` (ModuleDict routing by a forward input) and
``mode_select`` (a run-time ``a if training else b``).
The lists cover every function and tensor method torchvision's classification models call
in ``forward``, so that what ``emit`` traces can be written back.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..catalog.layers import drop_path
from ..catalog.same_padding import pad_same
from ..catalog.windows import patch_merging_pad


def route(modules: nn.ModuleDict, key: str, *args: Any, **kwargs: Any) -> Any:
    """``heads[key](h)`` where ``key`` is a forward input: pick the child at run time."""
    return modules[key](*args, **kwargs)


def mode_select(training: bool, if_training: Any, if_eval: Any) -> Any:
    """``a if training else b``: the generated forward writes it as an ``if``/``else`` that runs one branch
    (statements.py rewrites the line); called as a function only by shape inference."""
    return if_training if training else if_eval


def ceil(x: Any) -> Any:
    """``ceil(v)``: ``torch.ceil`` of a tensor, ``math.ceil`` (an int) of a number such as ``h.shape[-1] / 2``."""
    return torch.ceil(x) if isinstance(x, torch.Tensor) else math.ceil(x)


def floor(x: Any) -> Any:
    """``floor(v)``: ``torch.floor`` of a tensor, ``math.floor`` (an int) of a number."""
    return torch.floor(x) if isinstance(x, torch.Tensor) else math.floor(x)


def expect_input(x: torch.Tensor, shape: list[int], dtype: str | None = None) -> torch.Tensor:
    """``x = expect_input(x, [-1, 7], 'int64')``: ``x`` itself, after checking its rank, the sizes that are
    not -1 and its dtype; emit writes it first in a Graph whose traced forward specialised on them (a branch
    on ``x.dim()``), so another input raises instead of computing something else."""
    dims = list(x.shape)
    wrong = len(dims) != len(shape) or any(want not in (-1, got) for want, got in zip(shape, dims, strict=False))
    if wrong or (dtype is not None and str(x.dtype).removeprefix("torch.") != dtype):
        want = "[" + ", ".join("N" if d == -1 else str(d) for d in shape) + "]"
        raise ValueError(
            f"this model was emitted for an input of shape {want}"
            + (f" and dtype {dtype}" if dtype is not None else "")
            + f" (its traced forward depends on them); got shape {dims} and dtype {str(x.dtype).removeprefix('torch.')}"
        )
    return x


def expect_no_autocast(x: torch.Tensor, device_type: str | None = None) -> torch.Tensor:
    """``v = expect_no_autocast(v)``: ``v`` itself, after checking that autocast is off for ``v``'s device
    (and for ``device_type`` too, when given: ``expect_no_autocast(x, 'cpu')``).
    ``emit`` writes it where the traced forward turned autocast off for a few steps (timm's EfficientViT:
    ``with torch.autocast(device_type=v.device.type, enabled=False)``; Llama's rotary embedding, whose device
    type is ``x.device.type`` when run and the fixed ``'cpu'`` when traced): without an enclosing autocast that
    context changes nothing, and a Graph has no statement for it, so under autocast (where the original
    would run those steps in float32 and the Graph's would not) the rebuilt module raises instead."""
    kinds = [x.device.type, *([device_type] if device_type not in (None, x.device.type) else [])]
    for kind in kinds:
        if torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind):
            raise RuntimeError(
                "this model was emitted from a forward that turns autocast off for some steps, which a spec cannot "
                "express; it refuses to run under torch.autocast (enabled for '" + kind + "'), where the original "
                "would compute those steps in float32 and this one would not"
            )
    return x


def not_emitted(module: str, *inputs: Any) -> Any:
    """``y = not_emitted('RotaryEmbeddingCat', x)`` raises. ``emit`` writes it as the whole forward of a submodule
    that the model's forward never calls (its parent only reads its tensors, as timm's ViTs call
    ``self.rope.get_embed(...)``) and whose own forward cannot be traced: the submodule keeps its parameters
    and buffers, and calling it directly is an error instead of another computation."""
    raise RuntimeError(
        f"the forward of this {module} was not emitted: the model it was emitted from never calls it (its parent "
        "reads only its tensors), and it could not be traced on its own"
    )


def set_index(tensor: torch.Tensor, index: Any, value: Any) -> torch.Tensor:
    """The statement ``h[index] = value``: a copy of ``h`` with that part set to ``value`` (broadcast and cast
    as torch's ``h[index] = value`` does), to which the statement rebinds the name ``h``. ``h`` itself, and
    every value computed from it before, is unchanged: statements compute new values. Autograd sees a
    ``clone`` (the identity) and the assignment, so gradients are torch's for ``h[index] = value``."""
    out = tensor.clone()
    out[index] = value
    return out


# torch.nn.functional names win over torch's (activations, pooling, dropout).
_F_NAMES = (
    "relu relu6 gelu silu mish elu selu celu leaky_relu hardswish hardsigmoid hardtanh softplus softsign "
    "softmax log_softmax softmin glu logsigmoid tanhshrink dropout dropout1d dropout2d dropout3d "
    "alpha_dropout feature_alpha_dropout batch_norm instance_norm interpolate pad "
    "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d "
    "adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d avg_pool1d avg_pool2d avg_pool3d "
    "max_pool1d max_pool2d max_pool3d layer_norm group_norm rms_norm normalize linear embedding "
    "scaled_dot_product_attention one_hot pixel_shuffle pixel_unshuffle unfold fold cosine_similarity "
).split()
_TORCH_NAMES = (
    "cat concat concatenate stack hstack vstack flatten reshape permute transpose chunk split "
    "tensor_split unbind squeeze unsqueeze mean sum prod amax amin max min argmax argmin std var "
    "logsumexp cumsum matmul bmm mm einsum sigmoid tanh exp log log1p sqrt rsqrt abs neg clamp clip where "
    "roll flip narrow zeros_like ones_like full_like rand_like randn_like tril triu masked_fill add sub "
    "mul div pow maximum minimum square erf baddbmm outer topk sort arange movedim swapaxes unflatten "
    "channel_shuffle gather index_select diag norm sign floor ceil addcmul addcdiv addmm conv1d conv2d conv3d "
    "ones zeros full meshgrid diff "
).split()
# Functions that make a tensor without a tensor argument: during validation they run on meta, as does
# any call with a device= keyword (arange(500000000) would otherwise allocate 4 GB just to be checked).
FACTORIES = frozenset({torch.arange, torch.ones, torch.zeros, torch.full})
# Functions whose third positional argument is ``training``: when a statement leaves it out, it follows
# the module's mode (``self.training``), as nn.Dropout and timm's DropPath do.
DROPOUTS = frozenset(
    {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "drop_path"}
)
TRAINING_INDEX = 2
# Functions with a ``training`` argument (and its position) that a traced forward may pass ``self.training``:
# emit writes ``training=training`` for them (dropouts need nothing: the Graph language adds it).
MODE_ARGUMENTS: dict[str, int] = {**dict.fromkeys(DROPOUTS, TRAINING_INDEX), "batch_norm": 5}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    **{n: getattr(torch, n) for n in _TORCH_NAMES if hasattr(torch, n)},
    **{n: getattr(F, n) for n in _F_NAMES if hasattr(F, n)},
    "drop_path": drop_path,
    "patch_merging_pad": patch_merging_pad,  # Swin's patch merging (torchvision's _patch_merging_pad)
    "pad_same": pad_same,  # TensorFlow "SAME" padding for a window (timm's pad_same)
    "ceil": ceil,
    "floor": floor,
    "expect_input": expect_input,
    "expect_no_autocast": expect_no_autocast,
    "not_emitted": not_emitted,
}
# ``training=`` accepted for functions that call the flag something else (nn.InstanceNorm passes
# ``self.training`` as ``use_input_stats``).
TRAINING_ALIASES: dict[str, str] = {"instance_norm": "use_input_stats"}
# The module's mode in forward: ``self.training``.
TRAINING = "training"
TENSOR_METHODS = frozenset(
    (
        "view view_as reshape reshape_as permute transpose contiguous unsqueeze squeeze flatten unflatten "
        "mean sum prod size dim expand expand_as repeat repeat_interleave chunk split unbind softmax "
        "log_softmax relu sigmoid tanh exp log sqrt rsqrt abs neg float half double bfloat16 long int bool "
        "type_as masked_fill matmul mul add sub div pow clone detach t max min amax amin argmax argmin norm "
        "narrow roll flip clamp numel new_zeros new_ones new_full new_empty tril triu std var square movedim "
        "swapaxes gather index_select cumsum mT unfold addcmul addcdiv ne eq lt le gt ge "
        # element-wise, reordering and tiling methods timm's models call (SAM2's Hiera tiles its position
        # embedding): each computes what torch's function of the same name does
        "tile cos sin sign floor ceil round log2 erf logical_not where maximum minimum sort argsort topk "
        "all any isfinite clamp_min clamp_max bmm "
        "to "  # only with one value read from a tensor (TO_METHOD): h.to(x.dtype), h.to(x.device), h.to(x)
    ).split()
)
# ``h.to(v)`` takes exactly one positional argument, a value computed in forward (``x.dtype``, ``x.device``,
# a tensor): a fixed dtype is written ``h.float()``, ``h.half()``, ...; a fixed device ('cuda:0') would tie
# the spec to one machine.
TO_METHOD = "to"
# In-place methods a Graph may call on one of its own buffers, in a statement of their own
# (``num_batches_tracked.add_(1) if training else None``, as BatchNorm counts batches).
BUFFER_UPDATES = frozenset({"add_", "sub_", "mul_", "div_", "fill_", "zero_", "copy_"})
TENSOR_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device", "T", "mT", "is_cuda"})
BINARY_OPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.MatMult: operator.matmul,
    # element-wise and/or/xor of bool (or integer) tensors: Hugging Face's attention masks combine so
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
}
UNARY_OPS: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
COMPARE_OPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
CONSTANTS: dict[str, float] = {"inf": float("inf"), "pi": 3.141592653589793}
# dtypes a statement may name, as torch's (``arange(n, dtype=float32)``; SAM's relative coordinates)
DTYPES: dict[str, torch.dtype] = {
    n: getattr(torch, n) for n in "float16 bfloat16 float32 float64 int8 int16 int32 int64 uint8".split()
}
# Names the generated forward itself uses (its module globals and ``self``): a Graph input or a
# statement variable with one of these names would shadow them.
RESERVED_NAMES = frozenset(
    {"self", "torch", "operator", "builtins", "math", "getattr", "route", "inf", "pi", TRAINING, *DTYPES}
)
