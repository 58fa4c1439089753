"""The torch-free front end: text -> ``Source`` (data with the position of every key and item)
-> pydantic document models, plus ``${...}`` expressions and ``--set`` overrides.

Nothing in this package imports torch, so ``netspec validate`` on a file with a YAML or
structural error, and ``netspec --help``, never pay for it.
"""
