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
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FieldType = Literal["auto", "str", "int", "float", "decimal", "bool", "datetime", "date", "json"]
"""auto keeps the normalized value from the source; the others coerce (and dead-letter on failure)."""

_IDENT = r"[A-Za-z_][A-Za-z0-9_$]*"
_EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


class _Strict(BaseModel):
    # Unknown keys are typos in hand-edited files: reject them, never ignore them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """How one column is carried into the payload."""

    name: str | None = Field(default=None, description="field name in commands and events; default: the column name")
    type: FieldType = "auto"


class Condition(_Strict):
    """One row-filter condition on a column; a bare value in YAML means `eq`."""

    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    is_null: bool | None = None


class TableMapping(_Strict):
    """What is captured from one table: identity, carried columns and the row filter."""

    table: str = Field(description="schema.table")
    id: list[str] = Field(description="column or list of columns identifying the row's entity")
    fields: dict[str, FieldSpec] | Literal["*"] = Field(
        default="*", description="column -> field spec; '*' carries every column"
    )
    exclude: list[str] = Field(default_factory=list, description="columns never carried (with fields: '*')")
    where: dict[str, Condition] = Field(default_factory=dict, description="row filter; all must hold")
    commands: dict[Literal["insert", "update", "delete", "snapshot"], str] = Field(
        default_factory=dict, description="operation -> command type; defaults derived from the entity name"
    )

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

    @field_validator("fields", mode="before")
    @classmethod
    def _fields_shorthand(cls, v: Any) -> Any:
        # Accept: "*", a list of columns, or a mapping column -> (None | "new_name" | {name, type}).
        if v == "*":
            return v
        if isinstance(v, list):
            return {str(c): {} for c in v}
        if isinstance(v, dict):
            out: dict[str, Any] = {}
            for col, spec in v.items():
                if spec is None:
                    out[str(col)] = {}
                elif isinstance(spec, str):
                    out[str(col)] = {"name": spec}
                else:
                    out[str(col)] = spec
            return out
        return v

    @field_validator("where", mode="before")
    @classmethod
    def _where_shorthand(cls, v: Any) -> Any:
        # `deleted_at: null` -> is_null; `tenant_id: 7` -> eq; a dict is a full Condition.
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        for col, cond in v.items():
            if cond is None:
                out[str(col)] = {"is_null": True}
            elif isinstance(cond, dict):
                out[str(col)] = cond
            else:
                out[str(col)] = {"eq": cond}
        return out

    @model_validator(mode="after")
    def _exclude_only_with_star(self) -> "TableMapping":
        if self.exclude and self.fields != "*":
            raise ValueError("exclude is only meaningful with fields: '*'; remove the column from fields instead")
        return self

    @property
    def schema_name(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.table.split(".", 1)[1]


class RootEvents(_Strict):
    created: str | None = None
    updated: str | None = None
    deleted: str | None = None
    snapshotted: str | None = None


class ChildEvents(_Strict):
    added: str | None = None
    changed: str | None = None
    removed: str | None = None


class Transition(_Strict):
    """An update that moves `field` from `from` to `to` emits `event` instead of the generic update event.

    `from: "*"` matches any previous value.
    """

    field: str
    from_: Any = Field(alias="from")
    to: Any
    event: str


class RootMapping(TableMapping):
    events: RootEvents = Field(default_factory=RootEvents)
    transitions: list[Transition] = Field(default_factory=list)


class ChildMapping(TableMapping):
    name: str = Field(description="the children's collection name in the aggregate, e.g. lines")
    parent_key: list[str] = Field(description="column(s) of this table holding the root's id, in the order of root.id")
    events: ChildEvents = Field(default_factory=ChildEvents)
    enrich: list[str] = Field(default_factory=list, description="root fields copied into this child's events")

    @field_validator("parent_key", mode="before")
    @classmethod
    def _pk_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class AggregateMapping(_Strict):
    """One mapping file: an aggregate, its root table and its child tables."""

    aggregate: str = Field(description="aggregate type name, e.g. Order")
    schema_version: int = 1
    topic: str | None = Field(default=None, description="events topic; default events.<aggregate_snake>")
    root: RootMapping
    children: list[ChildMapping] = Field(default_factory=list)
    decider: str | None = Field(default=None, description="dotted path module:Class of a Python decider")
    emit_snapshot_events: bool = True

    @property
    def events_topic(self) -> str:
        return self.topic or f"events.{snake_case(self.aggregate)}"

    @property
    def context_key(self) -> str:
        """Key under which a child's events carry the root's enrichment fields (e.g. "order")."""
        return snake_case(self.aggregate)

    def tables(self) -> list[TableMapping]:
        return [self.root, *self.children]


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


MappingName = Annotated[str, Field(pattern=_EVENT_NAME.pattern)]
