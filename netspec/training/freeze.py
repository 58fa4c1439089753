"""``freeze:`` entries: stop training some parameters, optionally pin layers in eval mode.

In: a model and ``FreezeRule`` entries: a module path or parameter glob (see ``patterns``),
or ``{type: BatchNorm2d, eval: true, match?: ...}``. Out: the set of frozen parameter names
(their ``requires_grad`` is now False, so the optimizer builder leaves them out), with
``eval: true`` layers switched to eval mode for good; or a ``SpecError`` listing problems.

How ``eval: true`` survives later ``model.train()`` calls: the module's class is swapped for a
cached subclass of it (one per original class) that has the *same* ``__name__``,
``__qualname__`` and ``__module__`` and only overrides ``train()`` so that the module and its
children stay in eval mode. Alternatives were rejected: a forward pre-hook that flips
``training`` mutates state inside ``forward`` (graph breaks under ``torch.compile``) and a
patched instance attribute ``train`` does not survive ``copy.deepcopy``/pickling cleanly.
The subclass keeps ``print(model)`` unchanged (it prints ``__name__``), ``isinstance`` checks
and ``type:`` selectors still match (the original class is in the MRO), ``torch.compile``
sees an ordinary module (``forward`` is inherited), and ``copy.deepcopy``/``pickle``
work because ``__reduce_ex__`` rebuilds the instance through ``_rebuild_eval_frozen`` from
the original class. ``is_eval_frozen(module)`` tells such modules apart; ``unfreeze_eval``
undoes the swap.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ProblemList, SpecError
from ..frontend.training_models import EvalByType, EvalRule, FreezeByType, FreezeRule
from .init import as_list, check_types, type_names
from .kwargs import make_problem, name_list
from .patterns import model_names, no_match, select, selects

_EVAL_CLASSES: dict[type[nn.Module], type[nn.Module]] = {}


def _rebuild_eval_frozen(base: type[nn.Module]) -> nn.Module:
    """Unpickling/deepcopy entry point: a bare instance of ``base``'s eval-frozen subclass."""
    cls = eval_frozen_class(base)
    return cls.__new__(cls)


def _train_stays_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train()`` of an eval-frozen module: it and its children always go to eval mode."""
    if not isinstance(mode, bool):
        raise TypeError("training mode is expected to be boolean")
    return type(self)._netspec_eval_base.train(self, False)


def _reduce_ex(self: nn.Module, protocol: Any) -> tuple[Any, ...]:
    """Pickle as the original class (importable by name), re-pinned when loaded."""
    base = type(self)._netspec_eval_base
    if base.__reduce__ is not object.__reduce__ or base.__reduce_ex__ is not object.__reduce_ex__:
        return (_repin, (_AsBase(self),))  # e.g. torch.fx.GraphModule pickles its code, not its class
    return (_rebuild_eval_frozen, (base,), self.__getstate__())


class _AsBase:
    """Pickles a pinned module with its original class's own ``__reduce_ex__``."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __reduce_ex__(self, protocol: Any) -> Any:
        return type(self.module)._netspec_eval_base.__reduce_ex__(self.module, protocol)


def _repin(module: nn.Module) -> nn.Module:
    pin_eval(module)
    return module


def _deepcopy(self: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """For classes with their own ``__deepcopy__`` (e.g. ``torch.fx.GraphModule``): copy, re-pin."""
    copied = type(self)._netspec_eval_base.__deepcopy__(self, memo)
    pin_eval(copied)
    return copied


def eval_frozen_class(base: type[nn.Module]) -> type[nn.Module]:
    """The cached subclass of ``base`` whose ``train()`` keeps eval mode (same names as ``base``)."""
    if getattr(base, "_netspec_eval_base", None) is not None:
        return base
    cls = _EVAL_CLASSES.get(base)
    if cls is None:
        namespace = {
            "train": _train_stays_eval,
            "__reduce_ex__": _reduce_ex,
            "_netspec_eval_base": base,
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
            "__doc__": base.__doc__,
        }
        if "__deepcopy__" in {k for klass in base.__mro__ for k in vars(klass)}:
            namespace["__deepcopy__"] = _deepcopy
        if hasattr(base, "_wrapped_call"):
            # torch.fx.GraphModule.recompile() (also run by its pickling) installs a __call__ wrapper
            # on type(self) unless that class already has ``_wrapped_call``; a second wrapper on
            # this subclass would call the first one's super() in a loop, so share the original.
            namespace["_wrapped_call"] = base._wrapped_call
        cls = type(base.__name__, (base,), namespace)
        _EVAL_CLASSES[base] = cls
    return cls


def is_eval_frozen(module: nn.Module) -> bool:
    """Whether ``module`` was pinned to eval mode by a ``freeze: {eval: true}`` entry."""
    return getattr(type(module), "_netspec_eval_base", None) is not None


def pin_eval(module: nn.Module) -> None:
    """Keep ``module`` (and its children) in eval mode through later ``train()`` calls."""
    if not is_eval_frozen(module):
        module.__class__ = eval_frozen_class(type(module))
    module.eval()


def unfreeze_eval(module: nn.Module) -> None:
    """Undo ``pin_eval`` on ``module`` and everything inside it (training mode is left as is)."""
    for sub in module.modules():
        if is_eval_frozen(sub):
            sub.__class__ = type(sub)._netspec_eval_base


def modules_of_type(
    model: nn.Module,
    rule: FreezeByType | EvalByType,
    path: tuple[str | int, ...],
    names: list[str],
    what: str,
    source: Any,
    problems: ProblemList,
) -> list[tuple[str, nn.Module]]:
    """The modules a by-type ``freeze:`` or ``eval:`` entry selects: of one of its types and, with
    ``match``, under a name it selects. Empty (with a problem naming the closest of ``names``, or the
    types the model has) when the entry is wrong or selects nothing."""
    types = as_list(rule.type)
    if not check_types(types, model, (*path, "type"), source, problems):
        return []
    if rule.match is not None and not select(rule.match, names):
        message, hint = no_match(rule.match, names, what)
        problems.add(make_problem(source, (*path, "match"), message, hint))
        return []
    wanted = set(types)
    hits = [
        (name, module)
        for name, module in model.named_modules()
        if type_names(module) & wanted and (rule.match is None or (name and selects(rule.match, name)))
    ]
    if not hits:
        present = sorted({type(m).__name__ for m in model.modules()})
        where = f" matching {rule.match!r}" if rule.match is not None else ""
        message = f"no module of type {name_list(types)}{where} in the model"
        problems.add(make_problem(source, (*path, "type"), message, f"the model has: {name_list(present)}"))
    return hits


def select_freeze(
    model: nn.Module, rules: list[FreezeRule] | None, source: Any, problems: ProblemList
) -> tuple[set[str], set[str]]:
    """What every entry selects, adding problems instead of raising; the model is not changed.

    Returns (frozen parameter names, names of the modules pinned to eval mode).
    """
    params = dict(model.named_parameters())
    names = model_names(model)
    frozen: set[str] = set()
    pinned: set[str] = set()
    for index, rule in enumerate(rules or []):
        path = ("freeze", index)
        if isinstance(rule, str):
            chosen = select(rule, params)
            if not chosen:
                if select(rule, names):
                    message = f"pattern {rule!r} selects only buffers or parameter-free modules"
                    problems.add(make_problem(source, path, message, "there is nothing to freeze there"))
                else:
                    message, hint = no_match(rule, names)
                    problems.add(make_problem(source, path, message, hint))
                continue
            frozen.update(chosen)
            continue
        if not isinstance(rule, FreezeByType):
            problems.add(make_problem(source, path, f"expected a pattern or {{type: ...}}, got {rule!r}"))
            continue
        modules = modules_of_type(model, rule, path, names, "parameter or module", source, problems)
        for mname, module in modules:
            prefix = f"{mname}." if mname else ""
            frozen.update(prefix + p for p, _ in module.named_parameters() if prefix + p in params)
            if rule.eval:
                pinned.add(mname)
    return frozen, pinned


def freeze_selected(model: nn.Module, frozen: set[str], pinned: set[str]) -> None:
    """Freeze the parameters and pin the modules ``select_freeze`` chose (by name)."""
    params = dict(model.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    for name in sorted(pinned):
        pin_eval(model.get_submodule(name))


def run_freeze(
    model: nn.Module, rules: list[FreezeRule] | None, source: Any, problems: ProblemList
) -> tuple[set[str], set[str]]:
    """Select and apply every entry, adding problems instead of raising (the model is left
    untouched when an entry is wrong). Returns (frozen params, eval modules)."""
    before = len(problems.errors)
    frozen, pinned = select_freeze(model, rules, source, problems)
    if len(problems.errors) == before:
        freeze_selected(model, frozen, pinned)
    return frozen, pinned


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def select_modules(
    model: nn.Module, pattern: str, path: tuple[str | int, ...], source: Any, problems: ProblemList
) -> list[str]:
    """Module names ``pattern`` selects (outermost only); a problem naming the closest names when none."""
    modules = [name for name, _ in model.named_modules() if name]
    chosen = select(pattern, modules)
    if not chosen:
        message, hint = no_match(pattern, modules, "module")
        problems.add(make_problem(source, path, message, hint))
    return [n for n in chosen if not any(a in set(chosen) for a in _ancestors(n))]


def select_eval(model: nn.Module, rules: list[EvalRule] | None, source: Any, problems: ProblemList) -> set[str]:
    """``eval:``: the modules to pin in eval mode (their parameters stay trainable); the model is
    not changed. Entries are module paths / globs on module names, or ``{type: ..., match?: ...}``.
    Returns the module names ("" for the root); none when an entry is wrong.
    """
    before = len(problems.errors)
    chosen: dict[str, nn.Module] = {}
    modules = dict(model.named_modules())
    for index, rule in enumerate(rules or []):
        path: tuple[str | int, ...] = ("eval", index)
        if isinstance(rule, str):
            for name in select_modules(model, rule, path, source, problems):
                chosen.setdefault(name, modules[name])
            continue
        if not isinstance(rule, EvalByType):
            problems.add(make_problem(source, path, f"expected a module pattern or {{type: ...}}, got {rule!r}"))
            continue
        names = [n for n in modules if n]
        for name, module in modules_of_type(model, rule, path, names, "module", source, problems):
            chosen.setdefault(name, module)
    return set() if len(problems.errors) > before else set(chosen)


def run_eval(model: nn.Module, rules: list[EvalRule] | None, source: Any, problems: ProblemList) -> set[str]:
    """``eval:``: pin the selected modules in eval mode; returns their names (none when an entry is wrong)."""
    pinned = select_eval(model, rules, source, problems)
    freeze_selected(model, set(), pinned)
    return pinned


def apply_freeze(model: nn.Module, rules: list[FreezeRule] | None, source: Any) -> set[str]:
    """Freeze per ``rules``; returns the frozen parameter names. Raises ``SpecError`` on bad input."""
    problems = ProblemList()
    frozen, _ = run_freeze(model, rules, source, problems)
    if problems.errors:
        raise SpecError(problems.errors)
    return frozen
