"""Pydantic models of the training sections of a spec (contract section 3).

In: the plain data under ``init``, ``freeze``, ``optimizer`` and ``scheduler``. Out: typed
``InitRule``, ``FreezeRule`` (``str | FreezeByType``), ``OptimizerSpec`` and
``SchedulerSpec`` objects whose JSON Schema can be generated. These models check structure
and scalar types only (strictly: ``"3"`` is not a number); names and arguments that depend
on torch (init functions, optimizer and scheduler classes, their keyword arguments) are kept
as free-form extras (``extra="allow"``) and validated against torch's signatures by
``netspec.training.check_training`` and the builders, which report precise spec paths.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    WithJsonSchema,
    model_validator,
)


def _one_or_list(value: Any) -> str:
    return "<list>" if isinstance(value, list) else "<one>"


# A string or a list of strings; the tags (stripped from error paths by the spec loader) keep
# pydantic from reporting one error per union member.
StrOrList = Annotated[
    Annotated[StrictStr, Tag("<one>")] | Annotated[list[StrictStr], Tag("<list>")],
    Discriminator(_one_or_list),
]


def _norm_type(value: Any) -> Any:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or value in ("inf", "-inf")):
        raise ValueError(f"norm_type must be a number or 'inf', got {value!r}")
    return value


NormType = Annotated[
    Any,
    PlainValidator(_norm_type),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"enum": ["inf", "-inf"]}]}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")

    @property
    def extras(self) -> dict[str, Any]:
        """The keys beyond the declared fields (torch keyword arguments), in spec order."""
        return dict(self.model_extra or {})


class InitFn(_Open):
    """``{fn: normal, mean: 0.0, std: 0.1}``: a ``torch.nn.init`` function and its arguments."""

    fn: StrictStr


class InitRule(_Open):
    """One ``init:`` rule. Three forms, told apart by their keys:

    * ``{type|match, weight: <fn>, bias: <fn>, <param or buffer name>: <fn>}``; ``<fn>`` is a
      name (``zeros``) or ``{fn: normal, std: 0.1}``;
    * ``{type|match, fn: xavier_uniform, <its arguments>}`` applies to the selected
      parameters themselves;
    * ``{from: file.pt, match?, strip_prefix?, rename?, skip_mismatched?, strict?}`` loads tensors.

    ``match`` is one glob or a list of them (a name is selected when any selects it).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: StrOrList | None = None
    match: StrOrList | None = None
    fn: StrictStr | None = None
    from_: StrictStr | None = Field(default=None, alias="from")
    strip_prefix: StrictStr | None = None
    rename: dict[StrictStr, StrictStr] | None = None
    skip_mismatched: StrictBool | None = None
    strict: StrictBool | None = None


class FreezeByType(_Strict):
    """``{type: BatchNorm2d, eval: true, match?: "features.*"}``."""

    type: StrOrList
    eval: StrictBool = False
    match: StrictStr | None = None


class EvalByType(_Strict):
    """``eval: [{type: BatchNorm2d, match?: "backbone.*"}]``: modules kept in eval mode, by class."""

    type: StrOrList
    match: StrictStr | None = None


def _entry_kind(value: Any) -> str:
    """A ``freeze:`` or ``eval:`` entry: a mapping is by type, anything else a pattern."""
    return "<by-type>" if isinstance(value, (dict, _Strict)) else "<pattern>"


# A module path / parameter glob, or a by-type entry.
FreezeRule = Annotated[
    Annotated[StrictStr, Tag("<pattern>")] | Annotated[FreezeByType, Tag("<by-type>")], Discriminator(_entry_kind)
]
# ``eval:`` entries: a module path / glob on module names, or a by-type entry.
EvalRule = Annotated[
    Annotated[StrictStr, Tag("<pattern>")] | Annotated[EvalByType, Tag("<by-type>")], Discriminator(_entry_kind)
]


class AverageSpec(_Strict):
    """``average:``: an EMA or SWA copy of the weights (``torch.optim.swa_utils.AveragedModel``).

    ``{type: ema, decay: 0.9999}``: every ``update_average()`` call moves the copy (parameters
    and buffers) by ``1 - decay`` towards the model. ``{type: swa, start: 10, lr: 0.05}``: the
    first ``start`` calls of ``update_average()`` only count; from then on each call adds the
    model to an equal-weight running mean of the parameters (buffers are not averaged: run
    ``torch.optim.swa_utils.update_bn``), and ``SWALR`` anneals to ``lr`` over
    ``anneal_epochs`` of its steps.
    """

    type: Literal["ema", "swa"]
    decay: StrictFloat | None = Field(default=None, gt=0, lt=1)
    start: StrictInt | None = Field(default=None, ge=0)
    lr: StrictFloat | None = Field(default=None, gt=0)
    anneal_epochs: StrictInt | None = Field(default=None, ge=1)
    anneal_strategy: Literal["cos", "linear"] | None = None

    @model_validator(mode="after")
    def _keys_fit_type(self) -> AverageSpec:
        if self.type == "ema":
            wrong = [k for k in ("start", "lr", "anneal_epochs", "anneal_strategy") if getattr(self, k) is not None]
            if wrong:
                raise ValueError(f"{', '.join(wrong)} only apply to type: swa; ema takes decay")
        else:
            if self.decay is not None:
                raise ValueError("decay only applies to type: ema; swa takes start, lr, anneal_epochs, anneal_strategy")
            if self.lr is None:
                raise ValueError("type: swa needs lr (the SWALR learning rate), e.g. {type: swa, start: 10, lr: 0.05}")
        return self


class ParamGroupSpec(_Open):
    """``{params: "features.*", lr: 0.001, lr_mult: 10, weight_decay: 0, decay_mult: 0.5, ...}``.

    Other keys are per-group optimizer options (``momentum``, ``betas`` …).
    """

    params: StrOrList
    lr: StrictFloat | None = None
    lr_mult: StrictFloat | None = None
    weight_decay: StrictFloat | None = None
    decay_mult: StrictFloat | None = None


class ClipGradSpec(_Strict):
    """``{max_norm: 20, norm_type: 2}`` (norm clipping) or ``{max_value: 1.0}`` (value clipping)."""

    max_norm: StrictFloat | None = Field(default=None, gt=0)
    norm_type: NormType | None = None
    max_value: StrictFloat | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> ClipGradSpec:
        if (self.max_norm is None) == (self.max_value is None):
            message = "clip_grad needs exactly one of max_norm (norm clipping) or max_value (value clipping)"
            raise ValueError(message)
        if self.norm_type is not None and self.max_norm is None:
            raise ValueError("norm_type only applies with max_norm")
        return self


class OptimizerSpec(_Open):
    """``optimizer:``; keys beyond the declared ones are the optimizer's keyword arguments."""

    type: StrictStr
    lr: StrictFloat | None = None
    weight_decay: StrictFloat | None = None
    no_decay: list[StrictStr] | None = None
    groups: list[ParamGroupSpec] | None = None
    clip_grad: ClipGradSpec | None = None


class WarmupSpec(_Strict):
    """``{steps: 500, start_factor: 0.01}``: torch ``LinearLR`` before the main schedule."""

    steps: StrictInt = Field(ge=1)
    start_factor: StrictFloat = Field(default=0.01, gt=0, le=1)


class SchedulerSpec(_Open):
    """``scheduler:``; keys beyond the declared ones are the scheduler's keyword arguments.

    ``interval`` tells a training loop whether to call ``scheduler.step()`` once per epoch or
    once per optimizer step; ``warmup.steps`` counts in that unit. ``type`` may be left out
    when ``warmup`` is given (a bare linear warm-up, then the constant base rate).
    """

    type: StrictStr | None = None
    interval: Literal["epoch", "step"] = "epoch"
    warmup: WarmupSpec | None = None

    @model_validator(mode="after")
    def _something(self) -> SchedulerSpec:
        if self.type is None and self.warmup is None:
            raise ValueError("scheduler needs a type (e.g. StepLR) or a warmup, or both")
        return self


__all__ = [
    "AverageSpec",
    "ClipGradSpec",
    "EvalByType",
    "EvalRule",
    "FreezeByType",
    "FreezeRule",
    "InitFn",
    "InitRule",
    "OptimizerSpec",
    "ParamGroupSpec",
    "SchedulerSpec",
    "StrOrList",
    "WarmupSpec",
]
