"""Swin's shifted-window attention and MaxViT's window attention as netspec layer types and functions.

In: nothing (plain definitions). Out: ``ShiftedWindowAttention`` and ``ShiftedWindowAttentionV2`` (layer
types with torchvision's constructor arguments and state_dict names, so torchvision's Swin and Swin v2
weights load strictly), and the statement functions ``shifted_window_attention`` and
``patch_merging_pad``, and ``RelativePositionalMultiHeadAttention`` (MaxViT's, with torchvision's
arguments and state_dict). They follow torchvision's ``torchvision/models/swin_transformer.py``
(BSD-3-Clause) operation for operation, so outputs and dropout draws are bit-identical to it; the
padding to a window multiple and the shift masks depend on the input's spatial size and are computed
at run time for whatever size comes in, as torchvision does. The relative position index (an int64
buffer) lives inside the layer, where a spec need not describe it; ``relative_position_index`` (in
``INTEGER_INITS``) writes that table into a Graph's own integer buffer (MaxViT's attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def patch_merging_pad(x: torch.Tensor) -> torch.Tensor:
    """``[..., H, W, C]`` -> ``[..., ceil(H/2), ceil(W/2), 4C]``: pad H and W to even sizes and stack the four
    2x2 neighbours along channels (Swin's patch merging)."""
    H, W, _ = x.shape[-3:]
    x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
    x0 = x[..., 0::2, 0::2, :]
    x1 = x[..., 1::2, 0::2, :]
    x2 = x[..., 0::2, 1::2, :]
    x3 = x[..., 1::2, 1::2, :]
    return torch.cat([x0, x1, x2, x3], -1)


def _relative_position_bias(table: torch.Tensor, index: torch.Tensor, window_size: list[int]) -> torch.Tensor:
    n = window_size[0] * window_size[1]
    bias = table[index].view(n, n, -1)
    return bias.permute(2, 0, 1).contiguous().unsqueeze(0)


def shifted_window_attention(
    input: torch.Tensor,
    qkv_weight: torch.Tensor,
    proj_weight: torch.Tensor,
    relative_position_bias: torch.Tensor,
    window_size: list[int],
    num_heads: int,
    shift_size: list[int],
    attention_dropout: float = 0.0,
    dropout: float = 0.0,
    qkv_bias: torch.Tensor | None = None,
    proj_bias: torch.Tensor | None = None,
    logit_scale: torch.Tensor | None = None,
    training: bool = True,
) -> torch.Tensor:
    """Window multi-head self-attention over ``[N, H, W, C]`` with a relative position bias, on windows
    shifted by ``shift_size`` (masked where a shifted window wraps around); cosine attention with
    ``logit_scale`` (Swin v2). Pads H and W to window multiples and crops back."""
    B, H, W, C = input.shape
    pad_r = (window_size[1] - W % window_size[1]) % window_size[1]
    pad_b = (window_size[0] - H % window_size[0]) % window_size[0]
    x = F.pad(input, (0, 0, 0, pad_r, 0, pad_b))
    _, pad_H, pad_W, _ = x.shape

    shift_size = shift_size.copy()
    if window_size[0] >= pad_H:  # a window covering the whole map needs no shift
        shift_size[0] = 0
    if window_size[1] >= pad_W:
        shift_size[1] = 0
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(-shift_size[0], -shift_size[1]), dims=(1, 2))

    num_windows = (pad_H // window_size[0]) * (pad_W // window_size[1])
    x = x.view(B, pad_H // window_size[0], window_size[0], pad_W // window_size[1], window_size[1], C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B * num_windows, window_size[0] * window_size[1], C)

    if logit_scale is not None and qkv_bias is not None:
        qkv_bias = qkv_bias.clone()
        length = qkv_bias.numel() // 3
        qkv_bias[length : 2 * length].zero_()
    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(x.size(0), x.size(1), 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if logit_scale is not None:
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        logit_scale = torch.clamp(logit_scale, max=math.log(100.0)).exp()
        attn = attn * logit_scale
    else:
        q = q * (C // num_heads) ** -0.5
        attn = q.matmul(k.transpose(-2, -1))
    attn = attn + relative_position_bias

    if sum(shift_size) > 0:
        attn_mask = x.new_zeros((pad_H, pad_W))
        h_slices = ((0, -window_size[0]), (-window_size[0], -shift_size[0]), (-shift_size[0], None))
        w_slices = ((0, -window_size[1]), (-window_size[1], -shift_size[1]), (-shift_size[1], None))
        count = 0
        for h in h_slices:
            for w in w_slices:
                attn_mask[h[0] : h[1], w[0] : w[1]] = count
                count += 1
        attn_mask = attn_mask.view(pad_H // window_size[0], window_size[0], pad_W // window_size[1], window_size[1])
        attn_mask = attn_mask.permute(0, 2, 1, 3).reshape(num_windows, window_size[0] * window_size[1])
        attn_mask = attn_mask.unsqueeze(1) - attn_mask.unsqueeze(2)
        attn_mask = attn_mask.masked_fill(attn_mask != 0, (-100.0)).masked_fill(attn_mask == 0, 0.0)
        attn = attn.view(x.size(0) // num_windows, num_windows, num_heads, x.size(1), x.size(1))
        attn = attn + attn_mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, x.size(1), x.size(1))

    attn = F.softmax(attn, dim=-1)
    attn = F.dropout(attn, p=attention_dropout, training=training)
    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), C)
    x = F.linear(x, proj_weight, proj_bias)
    x = F.dropout(x, p=dropout, training=training)

    x = x.view(B, pad_H // window_size[0], pad_W // window_size[1], window_size[0], window_size[1], C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, pad_H, pad_W, C)
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(shift_size[0], shift_size[1]), dims=(1, 2))
    return x[:, :H, :W, :].contiguous()


def _relative_position_index(window_size: list[int]) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window_size[0]), torch.arange(window_size[1]), indexing="ij"))
    flat = torch.flatten(coords, 1)
    relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += window_size[0] - 1
    relative[:, :, 1] += window_size[1] - 1
    relative[:, :, 0] *= 2 * window_size[1] - 1
    return relative.sum(-1).flatten()


def relative_position_index(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``init`` of that name: Swin's and MaxViT's index of the relative position of every pair of tokens
    in a square w x w window, for a buffer of shape ``[w**4]`` (Swin) or ``[w**2, w**2]`` (MaxViT)."""
    count = math.prod(shape)
    tokens = math.isqrt(count)
    w = math.isqrt(tokens)
    if len(shape) not in (1, 2) or w < 1 or w**4 != count or (len(shape) == 2 and shape[0] != shape[1]):
        raise ValueError(f"relative_position_index needs shape [w**4] or [w**2, w**2], got {list(shape)}")
    return _relative_position_index([w, w]).reshape(shape).to(dtype=dtype, device=device)


def arange_table(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``init`` ``arange``: 0, 1, ..., n-1 along the last dimension, the same for every leading index
    (Hugging Face's ``position_ids`` buffer, ``torch.arange(n).expand((1, -1))``)."""
    if not shape:
        raise ValueError("arange needs at least one dimension")
    return torch.arange(shape[-1], device=device).to(dtype).expand(shape).contiguous()


def attention_bias_index(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``init`` of that name: LeViT's, TinyViT's and EfficientViT's (MSRA) ``attention_bias_idxs``, for a
    buffer of shape ``[r**2, r**2]``: for every pair of points of an r x r grid, the index of their offset
    ``(|dy|, |dx|)``, numbered in the order offsets first occur (row-major pairs)."""
    r = math.isqrt(math.isqrt(math.prod(shape))) if shape else 0
    if len(shape) != 2 or shape[0] != shape[1] or r < 1 or r * r != shape[0]:
        raise ValueError(f"attention_bias_index needs shape [r**2, r**2], got {list(shape)}")
    ys, xs = torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij")
    points = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    offsets = (points[:, None, :] - points[None, :, :]).abs()  # (N, N, 2)
    codes = (offsets[..., 0] * r + offsets[..., 1]).flatten()
    # number the offsets in the order they first occur
    order = torch.full((r * r,), -1, dtype=torch.long)
    first = torch.full((r * r,), codes.numel(), dtype=torch.long).scatter_reduce(
        0, codes, torch.arange(codes.numel()), reduce="amin"
    )
    seen = first < codes.numel()
    ranked = torch.argsort(first[seen])
    order[torch.nonzero(seen).flatten()[ranked]] = torch.arange(int(seen.sum()))
    return order[codes].reshape(shape).to(dtype=dtype, device=device)


# Fixed tables an integer buffer may be initialised with (besides zeros, ones and constant).
INTEGER_INITS = {
    "relative_position_index": relative_position_index,
    "attention_bias_index": attention_bias_index,
    "arange": arange_table,
}


class ShiftedWindowAttention(nn.Module):
    """torchvision's ``ShiftedWindowAttention``: Swin's window attention over ``[N, H, W, C]`` (``dim = C``)."""

    def __init__(
        self,
        dim: int,
        window_size: list[int],
        shift_size: list[int],
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attention_dropout: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(window_size) != 2 or len(shift_size) != 2:
            raise ValueError("window_size and shift_size must be of length 2")
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.window_size = list(window_size)
        self.shift_size = list(shift_size)
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.define_relative_position_bias_table()
        self.register_buffer("relative_position_index", _relative_position_index(self.window_size))
        self.add_variant_parts(num_heads, qkv_bias)

    def add_variant_parts(self, num_heads: int, qkv_bias: bool) -> None:
        """What a variant registers after the shared parts, in torchvision's order (V2: its scale and MLP)."""

    def define_relative_position_bias_table(self) -> None:
        size = (2 * self.window_size[0] - 1) * (2 * self.window_size[1] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(size, self.num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def get_relative_position_bias(self) -> torch.Tensor:
        return _relative_position_bias(
            self.relative_position_bias_table, self.relative_position_index, self.window_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shifted_window_attention(
            x,
            self.qkv.weight,
            self.proj.weight,
            self.get_relative_position_bias(),
            self.window_size,
            self.num_heads,
            shift_size=self.shift_size,
            attention_dropout=self.attention_dropout,
            dropout=self.dropout,
            qkv_bias=self.qkv.bias,
            proj_bias=self.proj.bias,
            training=self.training,
            **self.attention_options(),
        )

    def attention_options(self) -> dict[str, torch.Tensor]:
        """Further keyword arguments of ``shifted_window_attention``: none here, V2's learned logit scale."""
        return {}


class RelativePositionalMultiHeadAttention(nn.Module):
    """torchvision's MaxViT attention: multi-head self-attention over ``[B, G, P, D]`` (``G`` windows or grids
    of ``P = max_seq_len`` tokens) with a learned relative position bias over the square window."""

    def __init__(self, feat_dim: int, head_dim: int, max_seq_len: int) -> None:
        super().__init__()
        if feat_dim % head_dim != 0:
            raise ValueError(f"feat_dim: {feat_dim} must be divisible by head_dim: {head_dim}")
        size = math.isqrt(max_seq_len)
        if size * size != max_seq_len:
            raise ValueError(f"max_seq_len ({max_seq_len}) must be a square (the window's tokens)")
        self.n_heads = feat_dim // head_dim
        self.head_dim = head_dim
        self.size = size
        self.max_seq_len = max_seq_len
        self.to_qkv = nn.Linear(feat_dim, self.n_heads * self.head_dim * 3)
        self.scale_factor = feat_dim**-0.5
        self.merge = nn.Linear(self.head_dim * self.n_heads, feat_dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.empty(((2 * size - 1) * (2 * size - 1), self.n_heads), dtype=torch.float32)
        )
        self.register_buffer("relative_position_index", _relative_position_index([size, size]).view(size**2, -1))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def get_relative_positional_bias(self) -> torch.Tensor:
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(self.max_seq_len, self.max_seq_len, -1).permute(2, 0, 1).contiguous()
        return bias.unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, G, P, D = x.shape
        H, DH = self.n_heads, self.head_dim
        q, k, v = torch.chunk(self.to_qkv(x), 3, dim=-1)
        q = q.reshape(B, G, P, H, DH).permute(0, 1, 3, 2, 4)
        k = k.reshape(B, G, P, H, DH).permute(0, 1, 3, 2, 4)
        v = v.reshape(B, G, P, H, DH).permute(0, 1, 3, 2, 4)
        k = k * self.scale_factor
        dot_prod = torch.einsum("B G H I D, B G H J D -> B G H I J", q, k)
        dot_prod = F.softmax(dot_prod + self.get_relative_positional_bias(), dim=-1)
        out = torch.einsum("B G H I J, B G H J D -> B G H I D", dot_prod, v)
        out = out.permute(0, 1, 3, 2, 4).reshape(B, G, P, D)
        return self.merge(out)


class ShiftedWindowAttentionV2(ShiftedWindowAttention):
    """torchvision's ``ShiftedWindowAttentionV2``: Swin v2's cosine window attention with a continuous
    relative position bias (a small MLP over log-spaced coordinates)."""

    def add_variant_parts(self, num_heads: int, qkv_bias: bool) -> None:
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False)
        )
        if qkv_bias:
            length = self.qkv.bias.numel() // 3
            self.qkv.bias[length : 2 * length].data.zero_()

    def define_relative_position_bias_table(self) -> None:
        h = torch.arange(-(self.window_size[0] - 1), self.window_size[0], dtype=torch.float32)
        w = torch.arange(-(self.window_size[1] - 1), self.window_size[1], dtype=torch.float32)
        table = torch.stack(torch.meshgrid([h, w], indexing="ij")).permute(1, 2, 0).contiguous().unsqueeze(0)
        table[:, :, :, 0] /= self.window_size[0] - 1
        table[:, :, :, 1] /= self.window_size[1] - 1
        table *= 8
        table = torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / 3.0
        self.register_buffer("relative_coords_table", table)

    def get_relative_position_bias(self) -> torch.Tensor:
        bias = _relative_position_bias(
            self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads),
            self.relative_position_index,
            self.window_size,
        )
        return 16 * torch.sigmoid(bias)

    def attention_options(self) -> dict[str, torch.Tensor]:
        return {"logit_scale": self.logit_scale}


__all__ = [
    "INTEGER_INITS",
    "RelativePositionalMultiHeadAttention",
    "ShiftedWindowAttention",
    "ShiftedWindowAttentionV2",
    "arange_table",
    "attention_bias_index",
    "patch_merging_pad",
    "relative_position_index",
    "shifted_window_attention",
]
