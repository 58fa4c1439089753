"""The build summary: one row per module, with shapes, parameters, multiply-adds and memory.

In: a built model (and the meta model and shapes inference made). Out: a ``Summary`` rendered as a
table or JSON. ``collect`` makes the rows, ``macs`` and ``trace`` count multiply-adds, ``table``
renders them, ``footer`` adds the training lines.
"""

from __future__ import annotations

from .collect import summarize, summarize_built
from .footer import training_footer
from .table import COLUMNS, DEFAULT_COLUMNS, TRACE_BATCH, Row, Summary, format_shape

__all__ = [
    "COLUMNS",
    "DEFAULT_COLUMNS",
    "TRACE_BATCH",
    "Row",
    "Summary",
    "format_shape",
    "summarize",
    "summarize_built",
    "training_footer",
]
