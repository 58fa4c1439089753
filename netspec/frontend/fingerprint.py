"""The fingerprint of a spec: sha256 of its canonical form.

In: the plain data of a merged spec (``Spec.to_dict()``: extends and imports merged, overrides
applied, ``${...}`` kept as written). Out: the canonical JSON text (``canonical_json``) and its
sha256 as 64 hex digits (``fingerprint``). No torch here.

The canonical form is compact JSON (UTF-8, no spaces, non-ASCII kept) of the data in which
mappings whose order carries no meaning (a layer's arguments, the top-level sections, vars,
an optimizer's settings) have their keys sorted, while mappings whose order is meaning keep it:
the children of a ``layers:`` mapping (module and ``state_dict`` order), ``parameters:``,
``buffers:`` and a Graph's ``outputs:``. Lists always keep their order (``init`` and ``freeze``
rules, ``forward`` statements, shapes). Numbers are compared as the values they parse to, so
``1e-3`` and ``0.001`` are one float, while ``1`` (an int) and ``1.0`` (a float) differ.
Comments, quoting and layout never reach the data, so they cannot change it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Mappings under these keys keep their order in the canonical form: their order is the model's.
ORDERED_KEYS = frozenset({"layers", "parameters", "buffers", "outputs"})


def canonical(data: Any, ordered: bool = False) -> Any:
    """``data`` with the keys of every order-free mapping sorted (a deep copy)."""
    if isinstance(data, dict):
        keys = list(data) if ordered else sorted(data)
        return {k: canonical(data[k], k in ORDERED_KEYS) for k in keys}
    if isinstance(data, list):
        return [canonical(v) for v in data]
    return data


def canonical_json(data: Any) -> str:
    """The canonical text of a spec's data (see the module docstring)."""
    return json.dumps(canonical(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def fingerprint(data: Any) -> str:
    """sha256 of ``canonical_json(data)``, as 64 lowercase hex digits."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


__all__ = ["ORDERED_KEYS", "canonical", "canonical_json", "fingerprint"]
