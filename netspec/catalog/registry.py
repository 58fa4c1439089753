"""The layer catalogue: every ``type`` a spec may name, derived from torch itself.

In: ``torch.nn`` (scanned once, lazily) and classes added with ``netspec.register``.
Out: ``LayerType`` records (class, constructor parameters with ``ArgType``s and defaults)
looked up by name through an explicit ``Registry`` that refuses duplicates and answers
unknown names with "did you mean".

Thread safety: writes (``register``, the first scan of torch.nn) hold the registry's lock;
the scan is double-checked and publishes its entries before it marks itself done, so a
lookup racing the first scan waits for it instead of seeing a half-filled catalogue. Every
write bumps ``Registry.version``: a cache derived from a registry stores the version it
was built at and rebuilds when it differs (``register(..., replace=True)`` included).
"""

from __future__ import annotations

import fnmatch
import inspect
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
import torch.nn as nn

from ..errors import NetspecError, did_you_mean
from .argtypes import REQUIRED, ArgType, Finding, Param, annotations_of, check_arguments, param_of
from .layers import OWN_LAYERS

T = TypeVar("T")

# Names handled by netspec's own node kinds, or not layers at all.
CONTAINER_TYPES = frozenset({"Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "Graph"})
_NOT_LAYERS = frozenset({"Module", "Container", "DataParallel", "RNNBase", "RNNCellBase"})
# Constructor arguments netspec sets itself (device/dtype) or that torch marks private.
_FACTORY_ARGS = frozenset({"device", "dtype"})
# Sizes torch leaves unannotated (MultiheadAttention); typed here so a float is caught before building.
_UNANNOTATED_INTS = frozenset({"embed_dim", "num_heads", "kdim", "vdim"})


class UnknownName(NetspecError, KeyError):
    """A registry lookup failed; the message includes the closest names."""

    def __init__(self, kind: str, name: str, hint: str) -> None:
        self.kind, self.name, self.hint = kind, name, hint
        super().__init__(f"unknown {kind} {name!r}" + (f"; {hint}" if hint else ""))

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Named entries of one kind, with duplicate refusal and "did you mean" lookups."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._lock = threading.RLock()
        self._version = 0

    @property
    def version(self) -> int:
        """Bumped by every change of the entries; caches derived from the registry compare it."""
        return self._version

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        with self._lock:
            if name in self._entries and not replace:
                raise NetspecError(f"{self.kind} {name!r} is already registered; pass replace=True to override it")
            self._entries[name] = entry
            self._version += 1
        return entry

    def snapshot(self) -> dict[str, T]:
        """A copy of the entries, for ``restore`` (tests undo their ``register`` calls with it)."""
        with self._lock:
            return dict(self._entries)

    def restore(self, entries: Mapping[str, T]) -> None:
        """Replace every entry with ``entries`` (a ``snapshot``); bumps the version."""
        with self._lock:
            self._entries = dict(entries)
            self._version += 1

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(self.kind, name, did_you_mean(name, self._entries)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, pattern: str = "*") -> list[str]:
        """Entry names matching a glob, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))


@dataclass(frozen=True)
class LayerType:
    """A constructible ``nn.Module`` class and what its constructor accepts."""

    name: str
    cls: type[nn.Module]
    params: Mapping[str, Param]
    takes_factory_kwargs: bool
    origin: str  # "torch.nn", "netspec" (catalog/layers.py) or "registered"
    open_kwargs: bool = False  # a registered class taking **kwargs: names beyond its signature pass unchecked

    def check_args(self, args: Mapping[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
        """Validate argument names and types (``argtypes.check_arguments``, the checker optimizers,
        schedulers and init functions use too). Returns converted args and ``(arg, message, hint)`` problems."""
        return check_arguments(self.params, args, owner=self.name, open_kwargs=self.open_kwargs)

    def missing(self, given: Mapping[str, Any]) -> list[str]:
        return [p.name for p in self.params.values() if p.required and p.name not in given]

    def construct(self, kwargs: Mapping[str, Any], device: torch.device, dtype: torch.dtype | None) -> nn.Module:
        """Instantiate on ``device``; modules that take no device argument are built under a device context."""
        if self.takes_factory_kwargs:
            extra: dict[str, Any] = {}
            if device.type != "cpu":
                extra["device"] = device
            if dtype is not None:
                extra["dtype"] = dtype
            return self.cls(**kwargs, **extra)
        if device.type == "cpu":
            module = self.cls(**kwargs)
        else:
            with device:
                module = self.cls(**kwargs)
        return module.to(dtype=dtype) if dtype is not None else module


def _signature_params(cls: type[nn.Module]) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """Constructor parameters, looking through ``*args, **kwargs`` forwarding (LSTM -> RNNBase)."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        forwards = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
        named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if forwards and not named and klass is not nn.Module:
            if klass.__mro__[1] is nn.Module:
                return [], {}  # Identity, Tanh, ...: they accept and ignore anything
            continue
        if klass is not cls and named and named[0].name == "mode":
            named = named[1:]  # RNNBase: the subclass fixes the mode
        return named, annotations_of(init, named)
    return [], {}


def describe_class(cls: type[nn.Module], name: str, origin: str) -> LayerType:
    """Read a module class's constructor into a ``LayerType``."""
    params: dict[str, Param] = {}
    named, hints = _signature_params(cls)
    takes_factory = all(f in {p.name for p in named} for f in _FACTORY_ARGS)
    for p in named:
        if p.name in _FACTORY_ARGS or p.name.startswith("_"):
            continue
        annotation = hints.get(p.name, p.annotation)
        if p.name in _UNANNOTATED_INTS and annotation is REQUIRED:
            annotation = int
        params[p.name] = param_of(p, annotation)
    own_init = cls.__dict__.get("__init__")
    open_kwargs = (
        origin == "registered"
        and own_init is not None
        and any(p.kind is p.VAR_KEYWORD for p in inspect.signature(own_init).parameters.values())
    )
    if issubclass(cls, nn.RNN):
        # RNN takes `nonlinearity` through **kwargs, so no signature shows it.
        params["nonlinearity"] = Param("nonlinearity", ArgType("literal", values=("tanh", "relu")), "tanh")
    return LayerType(name, cls, params, takes_factory, origin, open_kwargs)


class LayerCatalogue(Registry[LayerType]):
    """All torch.nn layers plus registered classes; torch is scanned on first use."""

    def __init__(self) -> None:
        super().__init__("layer type")
        self._scanned = False
        self._by_class: tuple[int, dict[type[nn.Module], LayerType]] | None = None

    def _scan(self) -> None:
        if self._scanned:  # the fast path: set only after the scanned entries are in place
            return
        with self._lock:
            if self._scanned:  # another thread finished the scan while this one waited
                return
            found: dict[str, LayerType] = {}
            for name in dir(nn):
                obj = getattr(nn, name)
                if name.startswith("_") or name in CONTAINER_TYPES or name in _NOT_LAYERS:
                    continue
                if isinstance(obj, type) and issubclass(obj, nn.Module):
                    found[name] = describe_class(obj, name, "torch.nn")
            for cls in OWN_LAYERS:  # netspec's own layer types (catalog/layers.py)
                found.setdefault(cls.__name__, describe_class(cls, cls.__name__, "netspec"))
            # classes registered before the first scan keep their names
            self._entries = {**found, **self._entries}
            self._version += 1
            self._scanned = True

    def snapshot(self) -> dict[str, LayerType]:
        self._scan()
        return super().snapshot()

    def get(self, name: str) -> LayerType:
        self._scan()
        return super().get(name)

    def __contains__(self, name: object) -> bool:
        self._scan()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self._scan()
        return super().__iter__()

    def __len__(self) -> int:
        self._scan()
        return super().__len__()

    def names(self, pattern: str = "*") -> list[str]:
        self._scan()
        return super().names(pattern)

    def register(self, name: str, entry: LayerType, *, replace: bool = False) -> LayerType:
        self._scan()
        if name in CONTAINER_TYPES:
            raise NetspecError(f"{name!r} is a netspec node kind and cannot be registered as a layer")
        return super().register(name, entry, replace=replace)

    def by_class(self) -> dict[type[nn.Module], LayerType]:
        """Class -> entry (torch.nn's own name wins over an alias registered for the same class), cached
        per ``version``."""
        cached = self._by_class
        if cached is not None and cached[0] == self.version:
            return cached[1]
        with self._lock:
            self._scan()
            table: dict[type[nn.Module], LayerType] = {}
            for entry in self._entries.values():
                if entry.cls not in table or entry.origin == "torch.nn":
                    table[entry.cls] = entry
            self._by_class = (self.version, table)
        return table


LAYERS = LayerCatalogue()


def register(cls: type[nn.Module] | None = None, *, name: str | None = None, replace: bool = False) -> Any:
    """Make a custom ``nn.Module`` class usable as a spec ``type`` (also usable as a decorator)."""

    def add(klass: type[nn.Module]) -> type[nn.Module]:
        if not (isinstance(klass, type) and issubclass(klass, nn.Module)):
            raise NetspecError(f"netspec.register expects an nn.Module subclass, got {klass!r}")
        key = name or klass.__name__
        if key in LAYERS and LAYERS.get(key).cls is klass:
            return klass  # registering the same class twice (e.g. a re-imported module) is harmless
        LAYERS.register(key, describe_class(klass, key, "registered"), replace=replace)
        return klass

    return add if cls is None else add(cls)
