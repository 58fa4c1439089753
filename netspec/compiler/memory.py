"""Memory estimates made on the meta model, before any weight is allocated.

In: the sizes of every module's parameters and buffers that ``infer`` recorded on meta
tensors, the target device and dtype. Out: the
bytes its parameters and buffers will take, and a ``SpecError`` naming the largest layers
when that exceeds what the device has available.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ..errors import Problem, SpecError
from ..frontend.source import Source


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype, device="meta").element_size()


def sizes_in_bytes(tensors: Mapping[str, list[tuple[int, torch.dtype]]], dtype: torch.dtype | None) -> dict[str, int]:
    """Bytes per module; floating-point tensors take ``dtype`` when the build casts them."""
    sizes: dict[str, int] = {}
    for name, entries in tensors.items():
        total = sum(n * element_size(dtype if dtype is not None and t.is_floating_point else t) for n, t in entries)
        if total:
            sizes[name or "(root)"] = total
    return sizes


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``, or None where it cannot be known."""
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        known = [n for n in (_meminfo_available(), _rlimit_room(), _cgroup_room()) if n is not None]
        # Keep headroom: the process needs memory besides the weights (activations, the optimizer).
        return int(min(known) * HEADROOM) if known else None
    return None


HEADROOM = 0.9


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _rlimit_room() -> int | None:
    """Address space left under RLIMIT_AS (``ulimit -v``), or None when unlimited or unknown."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status", encoding="ascii") as fh:
            used = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
        return max(soft - used, 0)
    except (ImportError, OSError, ValueError, StopIteration):
        return None


def _cgroup_room() -> int | None:
    """Memory left under the cgroup's ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1)."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            with open(limit_file, encoding="ascii") as fh:
                text = fh.read().strip()
            if text == "max":
                return None
            limit = int(text)
            with open(usage_file, encoding="ascii") as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit >= 1 << 60:  # v1 reports "no limit" as a huge number
            return None
        return max(limit - usage, 0)
    return None


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def check_fits(tensors: Mapping[str, list[tuple[int, torch.dtype]]], device: torch.device, dtype: torch.dtype | None,
               source: Source, available: int | None = None) -> int:  # fmt: skip
    """Raise ``SpecError`` if the model's weights cannot fit on ``device``; returns the bytes needed."""
    sizes = sizes_in_bytes(tensors, dtype)
    total = sum(sizes.values())
    free = available if available is not None else available_bytes(device)
    if free is not None and total > free:
        largest = sorted(sizes.items(), key=lambda kv: kv[1], reverse=True)[:3]
        names = ", ".join(f"{name} ({human(size)})" for name, size in largest)
        raise SpecError(
            Problem(
                f"the model needs {human(total)} for its parameters and buffers but {device} has {human(free)} "
                f"available; largest layers: {names}",
                path=("model",),
                location=source.locate(("model",)),
                source_line=None,
                hint="reduce the sizes, or build on device='meta' to inspect it without allocating",
            )
        )
    return total
