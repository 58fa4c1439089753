"""Multiply-adds from the calls inference logged, without running the model.

Without running it means without torch's FLOP counter, whose first use imports ``torch._dynamo``.

In: a model and the ``CallLog`` inference made at the probe batch: every layer call with its input and
output shapes, every Graph statement with its function and argument shapes. Out: per module name (and
``""`` for the whole model) the multiply-adds per sample, counted as torch's ``FlopCounterMode`` counts
them (the matmuls and convolutions; a multiply-add is 2 FLOPs; every call counts; a module's figure
includes its children's) — or None when some layer or statement has no rule here, and the FLOP
counter must run. A rule applies only where the module's ``forward`` is that rule's class's own.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.modules as modules

from ..catalog.layers import StochasticDepth
from ..catalog.same_padding import AvgPool2dSame, Conv2dSame, MaxPool2dSame
from ..compiler.allowlists import (
    BINARY_OPS,
    BUFFER_UPDATES,
    COMPARE_OPS,
    FUNCTIONS,
    TENSOR_METHODS,
    UNARY_OPS,
    mode_select,
    route,
)
from ..compiler.calls import CallLog, LayerCall, StatementCall, TensorShape

Shape = tuple[int, ...]


def _dims(shape: Any) -> Shape | None:
    """A tensor's shape (a tuple of ints), or None for anything else."""
    if isinstance(shape, TensorShape):
        shape = shape.shape
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return shape
    return None


def _linear(m: nn.Module, call: LayerCall) -> int | None:
    out = _dims(call.output)
    return None if out is None else 2 * math.prod(out) * m.in_features


def _conv(m: nn.Module, call: LayerCall) -> int | None:
    out = _dims(call.output)
    if out is None:
        return None
    return 2 * math.prod(out) * (m.in_channels // m.groups) * math.prod(m.kernel_size)


def _conv_transpose(m: nn.Module, call: LayerCall) -> int | None:
    # torch's counter: each *input* position meets the whole filter (w: in, out/groups, *k)
    x = _dims(call.inputs[0]) if call.inputs else None
    if x is None or len(x) != len(m.kernel_size) + 2:
        return None
    return 2 * math.prod(x) // x[1] * math.prod(m.kernel_size) * m.in_channels * (m.out_channels // m.groups)


def _attention(m: nn.Module, call: LayerCall) -> int | None:
    """nn.MultiheadAttention: the q, k, v and output projections and the two attention matmuls."""
    shapes = [_dims(s) for s in call.inputs[:3]]
    if len(shapes) < 3 or m.bias_k is not None or m.add_zero_attn:
        return None
    q, k, v = shapes
    if q is None or k is None or v is None or not (len(q) == len(k) == len(v) == 3):
        return None
    e = m.embed_dim
    # (batch, length) pairs: batch_first is (N, L, E), else (L, N, E)
    (n, lq), (_, lk) = ((q[0], q[1]), (k[0], k[1])) if m.batch_first else ((q[1], q[0]), (k[1], k[0]))
    projections = n * lq * e * e + n * lk * (m.kdim + m.vdim) * e + n * lq * e * e
    return 2 * (projections + 2 * n * lq * lk * e)


LAYER_RULES: dict[type[nn.Module], Callable[[Any, LayerCall], int | None]] = {
    nn.Linear: _linear,
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.Conv3d: _conv,
    nn.ConvTranspose1d: _conv_transpose,
    nn.ConvTranspose2d: _conv_transpose,
    nn.ConvTranspose3d: _conv_transpose,
    nn.MultiheadAttention: _attention,
    Conv2dSame: _conv,  # the padding adds no FLOPs; the convolution is a Conv2d's
}
# torch.nn modules whose forward calls no matmul or convolution (what torch's counter counts): norms,
# activations, dropout, pooling, padding, reshaping, resampling, embeddings.
_ZERO_MODULES = (
    modules.activation,
    modules.batchnorm,
    modules.normalization,
    modules.instancenorm,
    modules.dropout,
    modules.pooling,
    modules.flatten,
    modules.padding,
    modules.pixelshuffle,
    modules.upsampling,
    modules.sparse,
    modules.channelshuffle,
    modules.fold,
    modules.distance,
)
ZERO_LAYERS: frozenset[type] = frozenset(
    {
        cls
        for mod in _ZERO_MODULES
        for cls in vars(mod).values()
        if isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == mod.__name__
    }
    - {nn.MultiheadAttention}
    | {nn.Identity, StochasticDepth, MaxPool2dSame, AvgPool2dSame}
)
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def layer_rule(module: nn.Module) -> Callable[[Any, LayerCall], int | None] | None:
    """The FLOP rule for ``module``'s calls; None when no rule is known (or its class overrides forward)."""
    cls = type(module)
    for base in cls.__mro__:
        if base in LAYER_RULES or base in ZERO_LAYERS:
            if cls.forward is not base.forward:
                return None  # timm's Conv2dSame: a Conv2d with its own forward
            return LAYER_RULES.get(base, _no_flops)
    return None


def _no_flops(_m: nn.Module, _call: LayerCall) -> int:
    return 0


def _matmul(a: Any, b: Any, out: Any) -> int | None:
    a, b, out = _dims(a), _dims(b), _dims(out)
    if a is None or b is None or out is None or len(a) < 2 or len(b) < 2:
        return None  # vector products: torch's counter treats them otherwise
    return 2 * math.prod(out) * a[-1]


def _sdpa(st: StatementCall) -> int | None:
    names = ("query", "key", "value")
    given = [*st.args[:3], *(st.kwargs[n] for n in names[len(st.args[:3]) :] if n in st.kwargs)]
    shapes = [_dims(s) for s in given]
    if len(shapes) != 3 or any(s is None or len(s) != 4 for s in shapes):
        return None
    q, k, v = shapes  # (batch, heads, length, dim); GQA keys and values have fewer heads: q's count
    return 2 * math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])  # type: ignore[index]


def _statement_rules() -> dict[Callable[..., Any] | str, Callable[[StatementCall], int | None]]:
    def product(i: int, j: int) -> Callable[[StatementCall], int | None]:
        return lambda st: _matmul(st.args[i], st.args[j], st.output) if len(st.args) > j else None

    def weighted(st: StatementCall) -> int | None:  # linear(x, w) and conv(x, w): output x weight's fan-in
        w, out = (_dims(st.args[1]) if len(st.args) > 1 else None), _dims(st.output)
        return None if w is None or out is None else 2 * math.prod(out) * math.prod(w[1:])

    rules: dict[Callable[..., Any] | str, Callable[[StatementCall], int | None]] = {
        torch.matmul: product(0, 1),
        operator.matmul: product(0, 1),
        "matmul": product(0, 1),
        torch.mm: product(0, 1),
        torch.bmm: product(0, 1),
        "bmm": product(0, 1),
        torch.baddbmm: product(1, 2),
        torch.addmm: product(1, 2),
        F.scaled_dot_product_attention: _sdpa,
        F.conv1d: weighted,
        F.conv2d: weighted,
        F.conv3d: weighted,
    }
    rules[F.linear] = lambda st: None if len(st.args) < 2 else _linear_statement(st)
    return rules


def _linear_statement(st: StatementCall) -> int | None:
    w, out = _dims(st.args[1]), _dims(st.output)
    return None if w is None or out is None or len(w) != 2 else 2 * math.prod(out) * w[1]


STATEMENT_RULES = _statement_rules()
# Statement functions (by their Graph name) and tensor methods with no matmul or convolution. A function
# added to the allow-list is in neither set until someone decides: it then has no rule (the FLOP counter
# runs), and tests/test_summary_macs.py names it.
ZERO_FUNCTIONS = frozenset(
    (
        "abs adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d "
        "adaptive_max_pool3d add addcdiv addcmul alpha_dropout amax amin arange argmax argmin avg_pool1d "
        "avg_pool2d avg_pool3d batch_norm cat ceil celu channel_shuffle chunk clamp clip concat concatenate "
        "cosine_similarity cumsum diag diff div drop_path dropout dropout1d dropout2d dropout3d elu embedding erf exp "
        "feature_alpha_dropout flatten flip floor fold full_like gather gelu glu group_norm hardsigmoid hardswish "
        "hardtanh hstack index_select instance_norm interpolate layer_norm leaky_relu log log1p log_softmax "
        "logsigmoid logsumexp masked_fill max max_pool1d max_pool2d max_pool3d maximum mean min minimum mish "
        "movedim mul narrow neg norm normalize one_hot ones_like pad pad_same patch_merging_pad permute pixel_shuffle "
        "pixel_unshuffle pow prod rand_like randn_like relu relu6 reshape roll rsqrt selu sigmoid sign silu "
        "softmax softmin softplus softsign sort split sqrt square squeeze stack std sub sum swapaxes tanh "
        "tanhshrink tensor_split topk transpose tril triu unbind unflatten unfold unsqueeze var vstack where "
        "zeros_like expect_input full ones zeros meshgrid rms_norm expect_no_autocast not_emitted"
    ).split()
)
UNCOUNTED_FUNCTIONS = frozenset({"einsum", "outer"})  # lowered to matmuls torch's counter counts: no rule yet
ZERO_STATEMENTS: frozenset[Any] = frozenset(
    {FUNCTIONS[n] for n in ZERO_FUNCTIONS if n in FUNCTIONS}
    | {f for f in (*BINARY_OPS.values(), *UNARY_OPS.values(), *COMPARE_OPS.values()) if f not in STATEMENT_RULES}
    | {m for m in TENSOR_METHODS if m not in STATEMENT_RULES}
    | BUFFER_UPDATES  # num_batches_tracked.add_(1)
    | {getattr, operator.getitem, route, mode_select}
)


def statement_flops(st: StatementCall) -> int | None:
    rule = STATEMENT_RULES.get(st.target)
    if rule is not None:
        return rule(st)
    return 0 if st.target in ZERO_STATEMENTS else None


def analytic_macs(model: nn.Module, log: CallLog, batch: int) -> dict[str, int] | None:
    """Per-sample multiply-adds per module name from the calls inference logged at ``batch``; None when a
    layer or statement needs the FLOP counter."""
    own: dict[str, int] = {}  # FLOPs at the probe batch, before dividing: as torch's counter sums them
    for name, module in model.named_modules():
        calls = log.layers.get(name, [])
        if isinstance(module, (fx.GraphModule, *CONTAINERS)):
            if any(c.forward for c in calls):
                return None  # called again as a whole: its steps ran inside torch, unseen
            flops = [statement_flops(st) for st in log.statements.get(name, [])]
        elif calls:
            rule = layer_rule(module)
            if rule is None:
                return None
            flops = [rule(module, c) for c in calls]
        else:
            continue  # never called: inside a layer whose rule counts it (out_proj), or unused
        if any(f is None for f in flops):
            return None
        own[name] = sum(flops)  # type: ignore[arg-type]
    totals: dict[str, int] = {}
    for name, value in own.items():
        parts = name.split(".") if name else []
        for k in range(len(parts) + 1):
            prefix = ".".join(parts[:k])
            totals[prefix] = totals.get(prefix, 0) + value
    return {name: flops // (2 * batch) for name, flops in totals.items()}


def shape_bytes(shape: Any, element_size: int) -> int:
    """Bytes per sample of an output whose shapes inference recorded (batch dimension first)."""
    if isinstance(shape, tuple) and shape and all(isinstance(d, int) for d in shape):
        return math.prod(shape[1:]) * element_size
    if isinstance(shape, (tuple, list)):
        return sum(shape_bytes(s, element_size) for s in shape)
    if isinstance(shape, dict):
        return sum(shape_bytes(s, element_size) for s in shape.values())
    return 0
