"""The pipeline's structure: each stage hands the next a new value, and the layering holds."""

from __future__ import annotations

import netspec

SPEC = {
    "netspec": 1,
    "input": {"shape": [3, 8, 8]},
    "model": {
        "type": "Sequential",
        "layers": {
            "conv": {"type": "Conv2d", "out_channels": 4, "kernel_size": 3},
            "norm": {"type": "BatchNorm2d"},
            "flat": "Flatten",
            "fc": {"type": "Linear", "out_features": 2},
        },
    },
}


def test_infer_returns_a_new_tree_and_leaves_resolves_alone() -> None:
    spec = netspec.read(SPEC)
    assert spec.resolved.root is not spec.inferred.root
    resolved = spec.resolved.root.children
    inferred = spec.inferred.root.children
    # The sizes the input determines are filled in on the inferred tree only.
    assert "in_channels" not in resolved["conv"].args and "num_features" not in resolved["norm"].args
    assert "in_features" not in resolved["fc"].args
    assert inferred["conv"].args["in_channels"] == 3 and inferred["norm"].args["num_features"] == 4
    assert inferred["fc"].args["in_features"] == 4 * 6 * 6
    model = netspec.build(spec).model
    assert (model.conv.in_channels, model.norm.num_features, model.fc.in_features) == (3, 4, 144)
