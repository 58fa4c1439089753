"""The catalogue: registries of layer types (derived from ``torch.nn`` and ``netspec.register``),
the argument-type system that checks and converts every keyword argument, and semantic checks.

In: class names and keyword arguments from the document. Out: ``LayerType`` entries and
checked, converted arguments (or located problems).
"""
