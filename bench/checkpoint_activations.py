"""Peak activation memory and step time of ``checkpoint_activations`` against hand-written PyTorch.

One training step (forward + backward) of an 8-block MLP stack (``Linear(256, 1024) -> GELU ->
Linear(1024, 256)`` per block, batch 16 x 128 tokens), four ways, in one process:

* ``hand``: the plain hand-written ``nn.Sequential``;
* ``hand + checkpoint``: the same, each block run through
  ``torch.utils.checkpoint.checkpoint(block, h, use_reentrant=False)`` by hand;
* ``netspec``: the spec without ``checkpoint_activations``;
* ``netspec + checkpoint_activations``: the spec with ``checkpoint_activations: ["layers.*"]``.

Memory is measured on the CPU with torch's own ``torch.distributed._tools.mem_tracker.MemTracker``
(a dispatch-mode tracker of every storage allocated and freed, by kind: parameters, gradients,
activations, temporaries); the figure is its peak of activation bytes (``ACT``) and of all bytes.
Times are medians of interleaved samples (``bench/timing.py``), ratios against ``hand``.
Gradients of the four variants are checked equal before anything is measured.

    python bench/checkpoint_activations.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from torch.distributed._tools.mem_tracker import MemTracker
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_times

import netspec

BLOCKS, DIM, HIDDEN, BATCH, TOKENS = 8, 256, 1024, 16, 128

SPEC = {
    "netspec": 1,
    "seed": 0,
    "model": {
        "type": "Sequential",
        "layers": {
            "layers": {
                "type": "Sequential",
                "repeat": BLOCKS,
                "layer": {
                    "type": "Sequential",
                    "layers": [
                        {"type": "Linear", "in_features": DIM, "out_features": HIDDEN},
                        "GELU",
                        {"type": "Linear", "in_features": HIDDEN, "out_features": DIM},
                    ],
                },
            }
        },
    },
}


def hand_model() -> nn.Sequential:
    blocks = [nn.Sequential(nn.Linear(DIM, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, DIM)) for _ in range(BLOCKS)]
    return nn.Sequential(OrderedDict(layers=nn.Sequential(*blocks)))


class HandCheckpointed(nn.Module):
    """The hand-written way: every block through ``torch.utils.checkpoint``."""

    def __init__(self, inner: nn.Sequential) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.inner.layers:
            h = checkpoint(block, h, use_reentrant=False)
        return h


def step_fn(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    return step


def peak(model: nn.Module, step: Callable[[], None]) -> tuple[int, int]:
    """(peak activation bytes, peak total bytes) of one step, by ``MemTracker``."""
    model.zero_grad(set_to_none=True)
    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        step()
    snapshot = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    act = next(v for k, v in snapshot.items() if str(k).endswith("ACT"))
    return int(act), int(snapshot["Total"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds (default 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x = torch.randn(BATCH, TOKENS, DIM, generator=torch.Generator().manual_seed(0))
    plain = netspec.build(SPEC).model
    ckpt = netspec.build({**SPEC, "checkpoint_activations": ["layers.*"]}).model
    hand = hand_model()
    hand.load_state_dict(plain.state_dict())
    hand_ckpt = HandCheckpointed(hand_model())
    hand_ckpt.inner.load_state_dict(plain.state_dict())
    models = {"hand": hand, "hand + checkpoint": hand_ckpt, "netspec": plain, "netspec + checkpoint_activations": ckpt}
    steps = {name: step_fn(model, x) for name, model in models.items()}
    grads = {}
    for name, model in models.items():
        steps[name]()
        grads[name] = [p.grad.clone() for p in model.parameters()]
    for name, got in grads.items():
        for a, b in zip(got, grads["hand"], strict=True):
            torch.testing.assert_close(a, b, msg=f"{name}: gradients differ from the hand-written model's")
    assert list(ckpt.state_dict()) == list(plain.state_dict()), "state_dict keys changed"
    memory = {name: peak(model, steps[name]) for name, model in models.items()}
    timing = median_times(steps, repeats=args.repeats)
    print(
        f"one training step, {BLOCKS} blocks of Linear({DIM}, {HIDDEN})-GELU-Linear, input [{BATCH}, {TOKENS}, {DIM}]"
    )
    print(f"{'variant':34} {'peak activations':>17} {'peak total':>11} {'step':>9} {'vs hand':>8}")
    for name in models:
        act, total = memory[name]
        ratio = timing.ratios.get(name, 1.0)
        seconds = timing.seconds[name]
        print(f"{name:34} {act / 2**20:14.1f} MiB {total / 2**20:7.1f} MiB {seconds * 1e3:6.0f} ms {ratio:7.2f}x")
    saved = 1 - memory["netspec + checkpoint_activations"][0] / memory["netspec"][0]
    print(f"checkpoint_activations: peak activation memory {saved:.0%} lower; gradients and state_dict keys unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
