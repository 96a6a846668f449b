"""The mapping file format: one YAML file per aggregate under the mappings directory.

This module is the format's single source of truth (pydantic models). The loader
(mapping/loader.py) turns validation errors into file:line messages, the
translator (mapping/translate.py) turns row changes into commands with it, and the
declarative decider (aggregate/declarative.py) reads the event rules from it.

Example (mappings/orders.yaml):

    aggregate: Order
    topic: shop.order.events          # optional, default "events.<aggregate snake_case>"
    root:
      table: shop.orders
      id: id                          # column(s) that identify the aggregate
      fields:                         # column -> field name in events (or a spec)
        id: order_id
        customer_id:                  # empty = keep the column name
        status:
        total: {type: decimal}
      where:                          # optional row filter; all conditions must hold
        deleted_at: null
      events:
        created: OrderPlaced
        updated: OrderUpdated
        deleted: OrderDeleted
      transitions:
        - {field: status, from: pending, to: paid, event: OrderPaid}
    children:
      - name: lines
        table: shop.order_lines
        id: id
        parent_key: order_id          # column(s) in the child holding the root's id
        fields: {id: line_id, sku:, quantity: {type: int}}
        events: {added: OrderLineAdded, changed: OrderLineChanged, removed: OrderLineRemoved}
        enrich: [customer_id, status] # root fields copied into this child's events

docs/mappings.md documents every key for mapping authors. The models check each key's
shape; rules spanning keys (transition/enrich fields exist, parent_key arity, command
name clashes, decider importable) are in loader.semantic_problems, rules spanning files
in load_mappings.

Names derived from the mapping (use these helpers rather than re-deriving them):
    ChildMapping.entity_name                 entity, else singular of name: lines -> Line
    AggregateMapping.command_type(tm, op)    commands: or Create/Update/Delete/Snapshot<Aggregate>,
                                             child Add/Change/Remove/Snapshot<Aggregate><Entity>
    AggregateMapping.root_event_type(kind)   events: or <Aggregate>Created/Updated/Deleted/Snapshotted
    AggregateMapping.child_event_type(c, k)  events: or <Aggregate><Entity>Added/Changed/Removed
    TableMapping.field_plan()                [(column, field name, type)], None for fields: '*'
    Condition.operators()                    the operators written, e.g. {"is_null": True}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

FieldType = Literal["auto", "str", "int", "float", "decimal", "bool", "datetime", "date", "json", "wkt", "geojson"]
"""auto keeps the normalized value from the source; the others coerce (and dead-letter on failure)."""

_IDENT = r"[A-Za-z_][A-Za-z0-9_$]*"
_EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
_COLUMN = re.compile(r"^[A-Za-z0-9_$]+$")          # MySQL unquoted identifier characters
_AGGREGATE = re.compile(r"^[A-Z][A-Za-z0-9]*$")     # PascalCase: used in command/event names and ids
_CHILD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")      # snake_case collection name
_ENTITY = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")     # Kafka's legal topic names
_DECIDER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
Operation = Literal["insert", "update", "delete", "snapshot"]


def _check_column(col: Any) -> str:
    if not isinstance(col, str) or not _COLUMN.match(col):
        raise ValueError(f"{col!r} is not a column name (letters, digits, _ and $ only)")
    return col


def _check_event_name(v: str | None) -> str | None:
    if v is not None and not _EVENT_NAME.match(v):
        raise ValueError(f"{v!r} is not a valid name: start with a letter, then letters, digits, _ or .")
    return v


class _Strict(BaseModel):
    # Unknown keys are typos in hand-edited files: reject them, never ignore them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """How one column is carried into the payload."""

    name: str | None = Field(default=None, description="field name in commands and events; default: the column name")
    type: FieldType = "auto"
    optional: bool = Field(default=False, description="the column may not exist yet (ALTER TABLE ... ADD COLUMN "
                           "later): the field is null until it does; `check` warns instead of failing")

    @field_validator("name")
    @classmethod
    def _non_empty(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("a field name must not be empty")
        return v


class Condition(_Strict):
    """One row-filter condition on a column; a bare value in YAML means `eq`."""

    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    is_null: bool | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _at_least_one(cls, v: Any) -> Any:
        if isinstance(v, dict) and not v:
            raise ValueError("empty condition: use one of eq, ne, in, not_in, is_null")
        return v

    def operators(self) -> dict[str, Any]:
        """The operators written in the file (an explicit `eq: null` counts; unset ones do not)."""
        out: dict[str, Any] = {}
        for name in ("eq", "ne", "in_", "not_in", "is_null"):
            if name in self.model_fields_set:
                out[name.rstrip("_")] = getattr(self, name)
        return out


class LookupStep(_Strict):
    """One hop of a lookup: the row of `table` whose `key` column equals the value so far; take its `take`."""

    table: str = Field(description="schema.table of a reference table")
    key: str = Field(description="the column of that table the value is looked up by (its primary key, usually)")
    take: str = Field(description="the column of that row carried on: the next hop's value, or the field's value")

    @field_validator("table")
    @classmethod
    def _qualified(cls, v: str) -> str:
        if "." not in v:
            raise ValueError("table must be written as schema.table")
        return v


class Lookup(_Strict):
    """A field of this table's events taken from reference tables (docs/mappings.md, lookups)."""

    from_: str = Field(alias="from", description="a field of this table whose value starts the lookup")
    via: list[LookupStep] = Field(min_length=1, description="the hops, in order")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TableMapping(_Strict):
    """What is captured from one table: identity, carried columns and the row filter."""

    table: str = Field(description="schema.table")
    id: list[str] = Field(description="column or list of columns identifying the row's entity")
    fields: dict[str, FieldSpec] | Literal["*"] = Field(
        default="*", description="column -> field spec; '*' carries every column"
    )
    exclude: list[str] = Field(default_factory=list, description="columns never carried (with fields: '*')")
    where: dict[str, Condition] = Field(default_factory=dict, description="row filter; all must hold")
    commands: dict[Operation, str] = Field(
        default_factory=dict, description="operation -> command type; defaults derived from the entity name"
    )
    lookups: dict[str, Lookup] = Field(default_factory=dict, description="field name -> lookup in reference tables")

    @field_validator("table")
    @classmethod
    def _schema_dot_table(cls, v: str) -> str:
        if not re.fullmatch(rf"{_IDENT}\.{_IDENT}", v):
            raise ValueError(f"table must be written as schema.table (for example shop.orders), got {v!r}")
        return v

    @field_validator("id", mode="before")
    @classmethod
    def _id_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("id")
    @classmethod
    def _id_columns(cls, v: list[str]) -> list[str]:
        return _key_columns(v)

    @field_validator("fields", mode="before")
    @classmethod
    def _fields_shorthand(cls, v: Any) -> Any:
        # Accept: "*", a list of columns, or a mapping column -> (None | "new_name" | {name, type}).
        if v == "*":
            return v
        if isinstance(v, list):
            if not v:
                raise ValueError("fields is empty: list the columns to carry, or write fields: '*' for all")
            return {_check_column(c): {} for c in v}
        if isinstance(v, dict):
            if not v:
                raise ValueError("fields is empty: list the columns to carry, or write fields: '*' for all")
            out: dict[str, Any] = {}
            for col, spec in v.items():
                if spec is None:
                    out[str(col)] = {}
                elif isinstance(spec, str):
                    out[str(col)] = {"name": spec}
                else:
                    out[str(col)] = spec
            return out
        raise ValueError(
            "fields must be '*' (every column), a list of columns, or a mapping "
            "column -> new name / {name, type}"
        )

    @field_validator("fields")
    @classmethod
    def _fields_names(cls, v: Any) -> Any:
        if v == "*":
            return v
        seen: dict[str, str] = {}
        for col, spec in v.items():
            _check_column(col)
            name = spec.name or col
            if name in seen:
                raise ValueError(f"columns {seen[name]} and {col} are both carried as field {name!r}")
            seen[name] = col
        return v

    @field_validator("exclude")
    @classmethod
    def _exclude_only_with_star(cls, v: list[str], info: ValidationInfo) -> list[str]:
        for col in v:
            _check_column(col)
        if v and info.data.get("fields", "*") != "*":
            raise ValueError("exclude is only meaningful with fields: '*'; remove the column from fields instead")
        return v

    @field_validator("where", mode="before")
    @classmethod
    def _where_shorthand(cls, v: Any) -> Any:
        # `deleted_at: null` -> is_null; `tenant_id: 7` -> eq; a dict is a full Condition.
        if not isinstance(v, dict):
            return v
        # a list is `in`: `status: [paid, shipped]`.
        out: dict[str, Any] = {}
        for col, cond in v.items():
            if cond is None:
                out[str(col)] = {"is_null": True}
            elif isinstance(cond, dict):
                out[str(col)] = cond
            elif isinstance(cond, list):
                out[str(col)] = {"in": cond}
            else:
                out[str(col)] = {"eq": cond}
        return out

    @field_validator("where")
    @classmethod
    def _where_columns(cls, v: dict[str, Condition]) -> dict[str, Condition]:
        for col in v:
            _check_column(col)
        return v

    @field_validator("commands")
    @classmethod
    def _command_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v.values():
            _check_event_name(name)
        return v

    def field_plan(self) -> list[tuple[str, str, str]] | None:
        """[(column, field name, type)] in file order; None for fields: '*' (every column, as named)."""
        if self.fields == "*":
            return None
        return [(col, spec.name or col, spec.type) for col, spec in self.fields.items()]

    def optional_columns(self) -> frozenset[str]:
        """Columns of fields marked `optional: true` (null while the column does not exist)."""
        if self.fields == "*":
            return frozenset()
        return frozenset(col for col, spec in self.fields.items() if spec.optional)

    def field_names(self) -> list[str] | None:
        """Field names carried in payloads; None for fields: '*' (the table's columns minus exclude)."""
        plan = self.field_plan()
        return None if plan is None else [name for _, name, _ in plan] + list(self.lookups)

    def columns(self) -> set[str] | None:
        """Columns the source must decode: fields ∪ id ∪ parent_key ∪ where; None for fields: '*'."""
        if self.fields == "*":
            return None
        return set(self.fields) | set(self.id) | set(getattr(self, "parent_key", ())) | set(self.where)

    @property
    def schema_name(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.table.split(".", 1)[1]


class RootEvents(_Strict):
    """Event type names of the root; unset ones default to <Aggregate>Created/Updated/Deleted/Snapshotted."""

    created: str | None = None
    updated: str | None = None
    deleted: str | None = None
    snapshotted: str | None = None

    @field_validator("created", "updated", "deleted", "snapshotted")
    @classmethod
    def _event_names(cls, v: str | None) -> str | None:
        return _check_event_name(v)


class ChildEvents(_Strict):
    """Event type names of a child; unset ones default to <Aggregate><Entity>Added/Changed/Removed."""

    added: str | None = None
    changed: str | None = None
    removed: str | None = None

    @field_validator("added", "changed", "removed")
    @classmethod
    def _event_names(cls, v: str | None) -> str | None:
        return _check_event_name(v)


class Transition(_Strict):
    """An update that moves `field` from `from` to `to` emits `event` instead of the generic update event.

    `from: "*"` matches any previous value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str
    from_: Any = Field(alias="from")
    to: Any
    event: str

    @field_validator("event")
    @classmethod
    def _event_name(cls, v: str) -> str:
        return _check_event_name(v)  # type: ignore[return-value]


class RootMapping(TableMapping):
    events: RootEvents = Field(default_factory=RootEvents)
    transitions: list[Transition] = Field(default_factory=list)


class ChildMapping(TableMapping):
    name: str = Field(description="the children's collection name in the aggregate, e.g. lines")
    entity: str | None = Field(
        default=None, description="singular PascalCase name of one child, e.g. Line; default derived from name"
    )
    parent_key: list[str] = Field(description="column(s) of this table holding the root's id, in the order of root.id")
    events: ChildEvents = Field(default_factory=ChildEvents)
    enrich: list[str] = Field(default_factory=list, description="root fields copied into this child's events")

    @field_validator("name")
    @classmethod
    def _collection_name(cls, v: str) -> str:
        if not _CHILD_NAME.match(v):
            raise ValueError(f"{v!r} is not a collection name: use snake_case such as lines or shipping_addresses")
        if v == "root":
            raise ValueError("'root' is reserved for the root entity; pick another collection name")
        return v

    @field_validator("entity")
    @classmethod
    def _entity_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENTITY.match(v):
            raise ValueError(f"{v!r} is not an entity name: use a singular PascalCase name such as Line or Address")
        return v

    @field_validator("parent_key", mode="before")
    @classmethod
    def _pk_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("parent_key")
    @classmethod
    def _pk_columns(cls, v: list[str]) -> list[str]:
        return _key_columns(v)

    @property
    def entity_name(self) -> str:
        """`entity`, else derived from `name`: lines -> Line, addresses -> Address, categories -> Category."""
        return self.entity or entity_from_collection(self.name)


class AggregateMapping(_Strict):
    """One mapping file: an aggregate, its root table and its child tables."""

    aggregate: str = Field(description="aggregate type name, e.g. Order")
    schema_version: int = 1
    topic: str | None = Field(default=None, description="events topic; default events.<aggregate_snake>")
    root: RootMapping
    children: list[ChildMapping] = Field(default_factory=list)
    decider: str | None = Field(default=None, description="dotted path module:Class of a Python decider")
    emit_snapshot_events: bool = True
    max_embedded_children: int = Field(
        default=1000, ge=0, description="children carried inside a created/snapshotted/deleted event; the rest "
        "follow as child added/removed events of the same source transaction (large aggregates, message size)")
    tombstone_on_delete: bool = Field(
        default=False, description="after the deleted event, also write a Kafka tombstone (null value, same key)"
    )

    @field_validator("aggregate")
    @classmethod
    def _aggregate_name(cls, v: str) -> str:
        if not _AGGREGATE.match(v):
            raise ValueError(f"{v!r} is not an aggregate name: use PascalCase letters and digits, e.g. Order")
        return v

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, v: str | None) -> str | None:
        if v is not None and not _TOPIC.match(v):
            raise ValueError(f"{v!r} is not a Kafka topic name: letters, digits, '.', '_' and '-' only")
        return v

    @field_validator("decider")
    @classmethod
    def _decider_path(cls, v: str | None) -> str | None:
        if v is not None and not _DECIDER.match(v):
            raise ValueError(f"{v!r} is not a decider path: write package.module:ClassName")
        return v

    @property
    def events_topic(self) -> str:
        return self.topic or f"events.{snake_case(self.aggregate)}"

    def command_type(self, entity: "TableMapping", operation: str) -> str:
        """The command type of a row change of `entity` (self.root or one of self.children).

        `commands:` of that table wins; defaults: root Create/Update/Delete/Snapshot<Aggregate>,
        child Add/Change/Remove/Snapshot<Aggregate><Entity> (e.g. AddOrderLine).
        """
        explicit = entity.commands.get(operation)  # type: ignore[call-overload]
        if explicit:
            return explicit
        if isinstance(entity, ChildMapping):
            return f"{_CHILD_VERBS[operation]}{self.aggregate}{entity.entity_name}"
        return f"{_ROOT_VERBS[operation]}{self.aggregate}"

    def root_event_type(self, kind: str) -> str:
        """kind: created/updated/deleted/snapshotted -> root.events.<kind> or <Aggregate><Kind>."""
        return getattr(self.root.events, kind) or f"{self.aggregate}{kind.capitalize()}"

    def child_event_type(self, child: "ChildMapping", kind: str) -> str:
        """kind: added/changed/removed -> child.events.<kind> or <Aggregate><Entity><Kind>."""
        return getattr(child.events, kind) or f"{self.aggregate}{child.entity_name}{kind.capitalize()}"

    def child(self, name: str) -> "ChildMapping | None":
        return next((c for c in self.children if c.name == name), None)

    @property
    def context_key(self) -> str:
        """Key under which a child's events carry the root's enrichment fields (e.g. "order")."""
        return snake_case(self.aggregate)

    def tables(self) -> list[TableMapping]:
        return [self.root, *self.children]


_ROOT_VERBS = {"insert": "Create", "update": "Update", "delete": "Delete", "snapshot": "Snapshot"}
_CHILD_VERBS = {"insert": "Add", "update": "Change", "delete": "Remove", "snapshot": "Snapshot"}


def _key_columns(v: list[str]) -> list[str]:
    if not v:
        raise ValueError("at least one column is required")
    for col in v:
        _check_column(col)
    if len(set(v)) != len(v):
        raise ValueError(f"a column is listed twice in {v}")
    return v


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def entity_from_collection(name: str) -> str:
    """Singular PascalCase entity name from a snake_case collection name.

    The last word is made singular: ...ies -> ...y, ...sses/xes/ches/shes/zes lose "es",
    another trailing "s" (not "ss") is dropped; then each word is capitalized:
    lines -> Line, order_lines -> OrderLine, addresses -> Address, categories -> Category,
    boxes -> Box, status -> Status (unchanged: write `entity:` when the rule guesses wrong).
    """
    words = [w for w in name.split("_") if w]
    if not words:
        return name
    last = words[-1]
    if last.endswith("ies") and len(last) > 3:
        last = last[:-3] + "y"
    elif last.endswith(("sses", "xes", "ches", "shes", "zes")):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith(("ss", "us", "is")):
        last = last[:-1]
    words[-1] = last
    return "".join(w[:1].upper() + w[1:] for w in words)


MappingName = Annotated[str, Field(pattern=_EVENT_NAME.pattern)]
