"""The resolved tree's copy (``RNode.copy``): inference completes a copy, the resolved tree stays as written."""

from __future__ import annotations

import dataclasses

import netspec
from netspec.compiler.tree import RNode


def test_copy_keeps_every_field_and_copies_what_inference_completes() -> None:
    spec = netspec.read({"netspec": 1, "input": {"shape": [4]}, "model": {"type": "Linear", "out_features": 2}})
    resolved = spec.resolved.root
    assert "in_features" not in resolved.args  # inference filled it into its own copy only
    assert spec.inferred.root.args["in_features"] == 4
    given = {f.name: f"value of {f.name}" for f in dataclasses.fields(RNode)}
    given |= {"args": {"a": 1}, "children": {}, "tensors": {"t": "spec"}, "omitted": {"o": ("x",)}, "written": ("a",)}
    node = RNode(**given)  # type: ignore[arg-type]
    copy = node.copy()
    for f in dataclasses.fields(RNode):  # a field added later must be copied too
        assert getattr(copy, f.name) == getattr(node, f.name), f.name
    assert copy.args is not node.args and copy.children is not node.children and copy.tensors is not node.tensors
