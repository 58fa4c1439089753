"""Specs shared by the distributed tests and their torchrun job (tests/dist_job.py)."""

from __future__ import annotations

from typing import Any

import torch

STEPS = 3
BATCH = 4


def fsdp_spec(strategy: str = "fsdp", **distributed: Any) -> dict[str, Any]:
    """A small model touching every kind of initial value: layer defaults, init rules, Graph-owned
    parameters and buffers (trunc_normal, sinusoidal, a non-persistent tril mask), BatchNorm stats,
    uneven shards (5 output rows over 2 ranks) and an empty one (a parameter with dim 0 of 1)."""
    return {
        "netspec": 1,
        "seed": 3,
        "model": {
            "type": "Graph",
            "inputs": ["tokens"],
            "layers": {
                "embed": {"type": "Embedding", "num_embeddings": 16, "embedding_dim": 8},
                "blocks": {
                    "type": "ModuleList",
                    "repeat": 2,
                    "layer": {
                        "type": "Sequential",
                        "layers": {
                            "norm": {"type": "LayerNorm", "normalized_shape": 8},
                            "fc1": {"type": "Linear", "in_features": 8, "out_features": 12},
                            "act": "GELU",
                            "fc2": {"type": "Linear", "in_features": 12, "out_features": 8},
                        },
                    },
                },
                "bn": {"type": "BatchNorm1d", "num_features": 8},
                "head": {"type": "Linear", "in_features": 8, "out_features": 5},
            },
            "parameters": {"pos": {"shape": [1, 4, 8], "init": {"fn": "trunc_normal", "std": 0.02}}},
            "buffers": {
                "pe": {"shape": [1, 4, 8], "init": "sinusoidal"},
                "mask": {"shape": [4, 4], "init": "tril", "persistent": False},
            },
            "forward": [
                "h = embed(tokens) + pos + pe",
                "h = blocks(h)",
                "a = (h @ h.transpose(1, 2)).masked_fill(mask == 0, -inf)",
                "h = softmax(a, dim=-1) @ h",
                "y = head(bn(h.mean(1)))",
            ],
            "outputs": "y",
        },
        "init": [
            {"type": "Linear", "weight": "xavier_uniform"},
            {"match": "blocks.1.fc2.bias", "fn": "uniform", "a": -0.5, "b": 0.5},
        ],
        "optimizer": {"type": "AdamW", "lr": 0.01, "weight_decay": 0.1, "clip_grad": {"max_norm": 0.05}},
        "scheduler": {"type": "StepLR", "step_size": 2, "gamma": 0.5},
        "distributed": {"strategy": strategy, "shard": ["blocks.*", "head"], **distributed},
    }


def tied_spec() -> dict[str, Any]:
    """``fsdp_spec`` plus a tied output embedding, activation checkpointing of the blocks and an EMA."""
    spec = fsdp_spec()
    spec["model"]["layers"]["unembed"] = {"type": "Linear", "in_features": 8, "out_features": 16, "bias": False}
    spec["model"]["forward"][-1] = "y = head(bn(h.mean(1))) + unembed(h).mean(1).sum(-1, keepdim=True)"
    spec["tie"] = {"unembed.weight": "embed.weight"}
    spec["checkpoint_activations"] = ["blocks.*"]
    spec["average"] = {"type": "ema", "decay": 0.5}
    return spec


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, 16, (BATCH, 4), generator=gen)
    labels = torch.randint(0, 5, (BATCH,), generator=gen)
    return tokens, labels


def train(built: Any, tokens: torch.Tensor, labels: torch.Tensor, steps: int = STEPS) -> list[float]:
    """``steps`` AdamW steps with clipping; the per-step loss on this rank's part of the batch."""
    model, optimizer, scheduler = built
    model.eval()  # BatchNorm on running stats: each rank's half batch gives the full batch's gradient
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(tokens), labels)
        loss.backward()
        built.clip_gradients()
        optimizer.step()
        scheduler.step()
        if built.averaged is not None:
            built.update_average()
        losses.append(float(loss.detach()))
    return losses
