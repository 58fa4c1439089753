"""Generated specs for the benchmarks, as plain dicts, and a writer that puts them in a YAML file.

- ``linear_stack_spec``: a Sequential of ``Linear(width, width)`` + ``ReLU`` pairs, counted as
  two layers per pair; with ``input.shape`` the ``in_features`` are left out (inferred),
  without it they are spelled out.
- ``mlp_graph_spec``: a Graph whose forward calls ``depth`` Linear layers with ``relu``
  between, one statement per layer, as ``handwritten.MLPChain`` does in a loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def linear_stack_spec(layers: int, width: int = 64, with_input: bool = True) -> dict[str, Any]:
    """``layers`` layers (``layers // 2`` Linear+ReLU pairs) of width ``width``."""
    if layers % 2:
        raise ValueError("layers counts Linear and ReLU separately, so it must be even")
    linear: dict[str, Any] = {"type": "Linear", "out_features": width}
    if not with_input:
        linear = {"type": "Linear", "in_features": width, "out_features": width}
    spec: dict[str, Any] = {"netspec": 1, "name": f"linear_stack_{layers}", "seed": 0}
    if with_input:
        spec["input"] = {"shape": [width]}
    spec["model"] = {"type": "Sequential", "layers": [dict(linear) if k % 2 == 0 else "ReLU" for k in range(layers)]}
    return spec


def mlp_graph_spec(depth: int = 100, width: int = 128) -> dict[str, Any]:
    """A Graph: ``hidden`` (a ModuleList of ``depth - 1`` Linear) and ``out``; forward unrolled."""
    forward = ["h = relu(hidden[0](x))"]
    forward += [f"h = relu(hidden[{k}](h))" for k in range(1, depth - 1)]
    forward.append("y = out(h)")
    return {
        "netspec": 1,
        "name": f"mlp_graph_{depth}",
        "seed": 0,
        "input": {"shape": [width]},
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "layers": {
                "hidden": {
                    "type": "ModuleList",
                    "repeat": depth - 1,
                    "layer": {"type": "Linear", "out_features": width},
                },
                "out": {"type": "Linear", "out_features": width},
            },
            "forward": forward,
            "outputs": "y",
        },
    }


def write_yaml(spec: dict[str, Any], path: Path) -> Path:
    """Block style at the top, one flow-style line per leaf layer, as a person would write it."""
    path.write_text(yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=120), encoding="utf-8")
    return path
