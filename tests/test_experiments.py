"""specs/experiments: the example experiment repo builds every variant, and two of them diff sensibly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netspec

FOLDER = Path(__file__).resolve().parents[1] / "specs" / "experiments"
VARIANTS = sorted(p for p in FOLDER.glob("*.yaml"))


def test_the_repo_has_a_base_three_variants_and_a_library() -> None:
    assert [p.stem for p in VARIANTS] == ["base", "depth", "optimizer", "width"]
    assert (FOLDER / "lib" / "blocks.yaml").is_file()


@pytest.mark.parametrize("path", VARIANTS, ids=lambda p: p.stem)
def test_every_variant_builds_and_runs(path: Path) -> None:
    built = netspec.build(path)
    assert "extends" not in built.spec.to_dict() and "imports" not in built.spec.to_dict()
    built.model.eval()
    out = built.model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    loss = built.loss(out, torch.tensor([1, 2]))
    loss.backward()
    built.optimizer.step()


def test_variants_change_only_what_they_study() -> None:
    base = netspec.build(FOLDER / "base.yaml")
    width = netspec.build(FOLDER / "width.yaml")
    adamw = netspec.build(FOLDER / "optimizer.yaml")
    assert width.model.stem.conv.out_channels == 2 * base.model.stem.conv.out_channels == 64
    assert isinstance(base.optimizer, torch.optim.SGD) and isinstance(adamw.optimizer, torch.optim.AdamW)
    # Same seed, same model section: the optimizer variant starts from bit-identical weights.
    for key, value in base.model.state_dict().items():
        assert torch.equal(adamw.model.state_dict()[key], value), key


def test_diff_base_against_depth() -> None:
    d = netspec.diff(FOLDER / "base.yaml", FOLDER / "depth.yaml")
    changed = {v.path: (v.a, v.b) for v in d.values}
    assert changed["model.layers.stage1.repeat"] == (2, 4)
    assert changed["model.layers.dropout"][1] is None  # removed by the variant
    added = sorted(m.name for m in d.modules if m.kind == "added")
    assert added == ["stage1.2", "stage1.3", "stage2.2", "stage2.3"]
    assert [m.name for m in d.modules if m.kind == "removed"] == ["dropout"]
    # Every weight of the base loads into the deeper model: warm-starting it is possible.
    assert d.shape_mismatch == [] and d.only_in_a == []
    assert len(d.loadable) == len(netspec.build(FOLDER / "base.yaml").model.state_dict())
