"""The floating dtype names a model's weights may have, as the spec, the API and the command line spell them.

In: nothing. Out: ``FLOATING_DTYPES``. Free of torch and pydantic, so that ``netspec build --help``
can list them without importing either.
"""

from __future__ import annotations

FLOATING_DTYPES = ("float32", "float64", "float16", "bfloat16")

__all__ = ["FLOATING_DTYPES"]
