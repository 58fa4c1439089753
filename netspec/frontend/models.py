"""Stage 2: the spec model — pydantic v2 classes for the document's structure.

In: the plain data of a ``Source`` (after ``--set`` overrides). Out: a ``SpecModel`` whose
nodes are typed (``LayerNode``, ``SequentialNode``, ``ModuleListNode``, ``ModuleDictNode``,
``GraphNode``, ``ParameterListNode``, ``ParameterDictNode``), or a list of ``Problem``s, one
per pydantic error, located in the source. Values may still hold ``${...}`` references;
layer arguments are checked against the catalogue later, by ``resolve``, once those are
substituted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    WithJsonSchema,
)

from ..errors import Problem, did_you_mean
from .distributed_models import DistributedSpec, MixedPrecisionSpec
from .source import Source
from .training_models import AverageSpec, EvalByType, EvalRule, FreezeRule, InitRule, OptimizerSpec, SchedulerSpec

REF_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"\$\{.+\}"}
# pydantic insists on resolving every $ref it emits; ``schema`` swaps this marker for {"$ref": "#/$defs/Node"}.
NODE_PLACEHOLDER: dict[str, Any] = {"x-netspec-node": True}


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _typed_or_ref(kind: type, label: str) -> Any:
    def check(value: Any) -> Any:
        if _is_ref(value) or (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
            return value
        raise ValueError(f"expected {label} or a ${{...}} reference, got {type(value).__name__} {value!r}")

    schema_type = {int: "integer", bool: "boolean", float: "number"}[kind]
    return Annotated[Any, PlainValidator(check), WithJsonSchema({"anyOf": [{"type": schema_type}, REF_SCHEMA]})]


IntOrRef = _typed_or_ref(int, "an int")
BoolOrRef = _typed_or_ref(bool, "true or false")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Conditional(BaseModel):
    """``if:`` on any node: false leaves the node out (dropped from a list, absent from a mapping)."""

    if_: BoolOrRef | None = Field(default=None, alias="if")


class LayerNode(_Conditional):
    """A torch.nn layer, a registered class or a block instance; extra keys are its arguments."""

    model_config = ConfigDict(extra="allow")
    type: StrictStr

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _layers_kind(value: Any) -> str:
    return "<list>" if isinstance(value, list) else "<mapping>"


NodeList = Annotated[
    Union[Annotated[list["Node"], Tag("<list>")], Annotated[dict[str, "Node"], Tag("<mapping>")]],
    Discriminator(_layers_kind),
]


class SequentialNode(_Strict, _Conditional):
    """``nn.Sequential``: ``layers`` as a list (children 0, 1, ...) or mapping, or ``repeat`` x ``layer``."""

    type: Literal["Sequential"]
    layers: NodeList | None = None
    repeat: IntOrRef | None = None
    layer: Node | None = None


class ModuleListNode(_Strict, _Conditional):
    """``nn.ModuleList``: ``layers`` as a list, or ``repeat`` independent copies of ``layer``."""

    type: Literal["ModuleList"]
    layers: list[Node] | None = None
    repeat: IntOrRef | None = None
    layer: Node | None = None


class ModuleDictNode(_Strict, _Conditional):
    type: Literal["ModuleDict"]
    layers: dict[str, Node]


DType = Literal["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]
DTYPE_NAMES: tuple[str, ...] = get_args(DType)  # netspec.compiler.meta maps them to torch dtypes


class TensorSpec(_Strict):
    """A tensor a Graph (or ParameterList/Dict) owns: its shape and how it is initialised."""

    shape: list[IntOrRef]
    init: StrictStr | dict[str, Any] = "zeros"
    requires_grad: BoolOrRef = True


class BufferSpec(_Strict):
    """A buffer a Graph owns; ``dtype`` (default: the build's) fixes it, e.g. ``int64`` for a counter."""

    shape: list[IntOrRef]
    init: StrictStr | dict[str, Any] = "zeros"
    persistent: BoolOrRef = True
    dtype: DType | None = None


class ParameterListNode(_Strict, _Conditional):
    type: Literal["ParameterList"]
    parameters: list[TensorSpec]


class ParameterDictNode(_Strict, _Conditional):
    type: Literal["ParameterDict"]
    parameters: dict[str, TensorSpec]


def _statement(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        raise ValueError(
            "a forward statement must be a string; YAML read this one as a mapping because it contains ': ' "
            "(quote the whole statement)"
        )
    raise ValueError(f"a forward statement must be a string like 'h = relu(x)', got {type(value).__name__} {value!r}")


Statement = Annotated[Any, PlainValidator(_statement), WithJsonSchema({"type": "string"})]


def _outputs_kind(value: Any) -> str:
    return {list: "<list>", dict: "<mapping>"}.get(type(value), "<name>")


class GraphNode(_Strict, _Conditional):
    """Dataflow with named children and ``forward`` statements; compiled to generated code."""

    type: Literal["Graph"]
    inputs: list[StrictStr]
    layers: dict[str, Node] = Field(default_factory=dict)
    parameters: dict[str, TensorSpec] = Field(default_factory=dict)
    buffers: dict[str, BufferSpec] = Field(default_factory=dict)
    forward: list[Statement]
    outputs: Annotated[
        Union[
            Annotated[StrictStr, Tag("<name>")],
            Annotated[list[StrictStr], Tag("<list>")],
            Annotated[dict[str, StrictStr], Tag("<mapping>")],
        ],
        Discriminator(_outputs_kind),
    ]


NODE_KINDS: dict[str, type[BaseModel]] = {
    "Sequential": SequentialNode,
    "ModuleList": ModuleListNode,
    "ModuleDict": ModuleDictNode,
    "Graph": GraphNode,
    "ParameterList": ParameterListNode,
    "ParameterDict": ParameterDictNode,
}


class RepeatItem(_Strict, _Conditional):
    """``{repeat: N, layer: {...}}`` inside a list of layers: N copies spliced in place (``${i}`` = 0..N-1)."""

    repeat: IntOrRef
    layer: Node


def _node_kind(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("type"), str) and value["type"] in NODE_KINDS:
        return f"<{value['type']}>"
    if isinstance(value, dict) and "type" not in value and "repeat" in value:
        return "<repeat>"
    if isinstance(value, RepeatItem):
        return "<repeat>"
    if isinstance(value, BaseModel):
        kind = getattr(value, "type", None)
        return f"<{kind}>" if isinstance(kind, str) and kind in NODE_KINDS else "<layer>"
    return "<layer>"


def _shorthand(value: Any) -> Any:
    """``ReLU`` -> ``{type: ReLU}``: a node, or a block parameter's declaration, written as its type."""
    return {"type": value} if isinstance(value, str) else value


Node = Annotated[
    Union[
        Annotated[SequentialNode, Tag("<Sequential>")],
        Annotated[ModuleListNode, Tag("<ModuleList>")],
        Annotated[ModuleDictNode, Tag("<ModuleDict>")],
        Annotated[GraphNode, Tag("<Graph>")],
        Annotated[ParameterListNode, Tag("<ParameterList>")],
        Annotated[ParameterDictNode, Tag("<ParameterDict>")],
        Annotated[LayerNode, Tag("<layer>")],
        Annotated["RepeatItem", Tag("<repeat>")],
    ],
    Discriminator(_node_kind),
    BeforeValidator(_shorthand),
    WithJsonSchema(NODE_PLACEHOLDER),
]
AnyNode = (
    SequentialNode
    | ModuleListNode
    | ModuleDictNode
    | GraphNode
    | ParameterListNode
    | ParameterDictNode
    | LayerNode
    | RepeatItem
)

for _cls in (SequentialNode, ModuleListNode, ModuleDictNode, GraphNode, RepeatItem):
    _cls.model_rebuild()

ParamType = Literal["int", "float", "bool", "str", "list", "dict", "node", "any"]
PARAM_TYPES: tuple[str, ...] = get_args(ParamType)


class ParamDecl(_Strict):
    """A block parameter: ``{type: int, default: 1}``; without ``default`` it is required."""

    type: ParamType = "any"
    default: Any = None
    doc: StrictStr | None = None

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set


class BlockSpec(_Strict):
    """A reusable, parameterised sub-network; ``body`` is any node with ``${param}`` references."""

    params: dict[str, Annotated[ParamDecl, BeforeValidator(_shorthand)]] = Field(default_factory=dict)
    body: Node
    doc: StrictStr | None = None


class InputSpec(_Strict):
    """The per-sample input shape (batch dimension implied) and dtype used for shape inference."""

    shape: list[IntOrRef]
    dtype: DType = "float32"


class SpecModel(_Strict):
    """The whole document (contract section 1)."""

    netspec: Literal[1]
    name: StrictStr | None = None
    seed: Annotated[StrictInt, Field(ge=0, le=2**64 - 1)] | None = None  # torch.manual_seed's range
    vars: dict[str, Any] = Field(default_factory=dict)
    input: InputSpec | None = None
    model: Node
    blocks: dict[str, BlockSpec] = Field(default_factory=dict)
    init: list[InitRule] | None = None
    freeze: list[FreezeRule] | None = None
    optimizer: OptimizerSpec | None = None
    scheduler: SchedulerSpec | None = None
    loss: Node | None = None
    # Composition (contract section 6): merged away by frontend.compose before validation; here for the schema.
    extends: StrictStr | list[StrictStr] | None = Field(
        default=None, description="spec file(s) this one patches, merged in order; relative to this file"
    )
    imports: StrictStr | list[StrictStr] | None = Field(
        default=None, description="block-library files whose blocks this spec may use; relative to this file"
    )
    distributed: DistributedSpec | None = None
    tie: dict[StrictStr, StrictStr] | None = None
    eval: list[EvalRule] | None = None
    checkpoint_activations: list[StrictStr] | None = None
    average: AverageSpec | None = None


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """Drop pydantic's union tags (``<Sequential>``) so the path reads as the document's."""
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("<") and p.endswith(">")))


# Mappings of the top-level sections whose unknown keys get "did you mean" (an index stands for any entry).
_SECTION_MODELS: dict[tuple[str | int, ...], type[BaseModel]] = {
    ("average",): AverageSpec,
    ("eval", 0): EvalByType,
    ("distributed",): DistributedSpec,
    ("distributed", "mixed_precision"): MixedPrecisionSpec,
}


def _fields_at(path: tuple[str | int, ...], data: Any) -> list[str]:
    """Field names allowed where an unknown key was found, for "did you mean"."""
    node: Any = data
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return []
    if path[:-1] == ():
        return list(SpecModel.model_fields)
    section = _SECTION_MODELS.get(path[:-1]) or (_SECTION_MODELS.get((path[0], 0)) if len(path) == 3 else None)
    if section is not None:
        return list(section.model_fields)
    kind = node.get("type") if isinstance(node, dict) else None
    model = NODE_KINDS.get(kind) if isinstance(kind, str) else None
    if model is None and len(path) >= 2 and path[-2] in ("parameters", "buffers"):
        model = TensorSpec
    return list(model.model_fields) if model is not None else []


# Keys people bring from other tools, with what netspec calls them instead.
_TARGET_HINT = (
    "'_target_' is Hydra's key; netspec names what to build with type: (type: Linear for torch.nn.Linear, "
    "the registered name of your own class, or a block name), and the other keys are its arguments"
)
_TARGET_SECTIONS = {  # what `type:` names in a top-level section: (what, the hint)
    section: (
        f"the {section}",
        f"'_target_' is Hydra's key; netspec names the {section} with type: (type: {example} for "
        f"torch.optim.{'lr_scheduler.' if section == 'scheduler' else ''}{example}), and the other keys are its "
        "arguments",
    )
    for section, example in (("optimizer", "AdamW"), ("scheduler", "CosineAnnealingLR"))
}
_KEY_HINTS = {
    ("clip_grad",): "did you mean optimizer.clip_grad? gradient clipping is set inside optimizer:",
    ("_target_",): _TARGET_HINT,
}


def problems_from_validation(error: ValidationError, source: Source) -> list[Problem]:
    """One located ``Problem`` per pydantic error, worded for a spec author."""
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for err in error.errors(include_url=False):
        path = _clean_loc(err["loc"])
        kind = err["type"]
        if (path, kind) in seen:
            continue
        seen.add((path, kind))
        got = err.get("input")
        hint = None
        if kind == "extra_forbidden":
            key = path[-1] if path else "?"
            message = f"unknown key {key!r}"
            hint = _KEY_HINTS.get((key,)) if key == "_target_" or len(path) == 1 else None
            hint = hint or did_you_mean(str(key), _fields_at(path, source.data)) or None
        elif kind == "missing" and path and path[-1] == "type" and _has_target(source.data, path[:-1]):
            path = (*path[:-1], "_target_")
            section = _TARGET_SECTIONS.get(path[0]) if len(path) == 2 else None
            message = f"'_target_' is not a netspec key: name {section[0] if section else 'the layer'} with 'type:'"
            hint = section[1] if section else _TARGET_HINT
        elif (
            kind == "value_error" and len(path) == 1 and path[0] in _TARGET_SECTIONS and _has_target(source.data, path)
        ):
            section = _TARGET_SECTIONS[path[0]]  # scheduler: type may be left out, so no key is missing
            path = (*path, "_target_")
            message, hint = f"'_target_' is not a netspec key: name {section[0]} with 'type:'", section[1]
        elif kind == "missing":
            message = f"missing required key {path[-1]!r}" if path else "missing value"
        elif kind == "literal_error":
            message = f"{err['msg'].lower()}, got {got!r}"
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            message = f"expected a mapping, got {type(got).__name__} {got!r}"
        elif kind == "list_type":
            message = f"expected a list, got {type(got).__name__} {got!r}"
        elif kind == "value_error":
            message = err["msg"].removeprefix("Value error, ")
        else:
            message = f"{err['msg']}, got {type(got).__name__} {got!r}"
        problems.append(source.problem(path, message, hint=hint))
    return problems


def _has_target(data: Any, path: tuple[Any, ...]) -> bool:
    """Whether the mapping at ``path`` in ``data`` has a ``_target_`` key (Hydra's habit)."""
    node = data
    for part in path:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        else:
            return False
    return isinstance(node, dict) and "_target_" in node


def validate_spec(source: Source) -> tuple[SpecModel | None, list[Problem]]:
    """Validate the structure of ``source.data``. Never raises for user input."""
    if not isinstance(source.data, dict):
        return None, [source.problem((), f"a spec must be a mapping, got {type(source.data).__name__}")]
    try:
        return SpecModel.model_validate(source.data), []
    except ValidationError as err:
        return None, problems_from_validation(err, source)
