"""Commands: what a mapped row change asks an aggregate to do."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from cdc_bridge.source.position import SourcePosition


class Command(BaseModel):
    """A row change of a mapped table, addressed to one aggregate instance.

    aggregate_id is the routing key: for a root row it is the row's id, for a child
    row it is the parent's id taken from parent_key, so a child lands with its root.
    Composite ids are the column values joined by ":" in the declared order.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    command_type: str                 # e.g. PlaceOrder / AddOrderLine (mapping `commands:` or defaults)
    aggregate: str                    # aggregate type, e.g. Order
    aggregate_id: str                 # routing key (root id)
    entity: str                       # "root" or the child collection name, e.g. "lines"
    entity_id: str                    # the row's own id
    operation: Literal["insert", "update", "delete", "snapshot"]
    payload: dict[str, Any]           # mapped fields after the change (before, for delete)
    before: dict[str, Any] | None     # mapped fields before the change (update/delete), else None
    table: str                        # schema.table of the row
    position: SourcePosition          # end of the source transaction
    txn_id: str                       # source transaction id (GTID or file:pos)
    commit_ts: float                  # source commit time, epoch seconds
    index: int = 0                    # ordinal of the row change within its source transaction
    soft: bool = False                # a delete because the row left the mapping's `where` (a soft
                                      # delete): the row still exists; it may come back


class DeadLetter(BaseModel):
    """Something that could not become a command or an event; published with its reason, never dropped."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    reason: str                       # short machine-readable reason: coercion_failed, orphan, rejected, ...
    detail: str                       # human-readable explanation
    table: str | None = None
    aggregate: str | None = None
    aggregate_id: str | None = None
    position: SourcePosition | None = None
    txn_id: str | None = None
    record: dict[str, Any] | None = None  # the row / command as it was

    def to_json_dict(self) -> dict[str, Any]:
        d = self.model_dump(exclude={"position"})
        d["position"] = self.position.to_dict() if self.position else None
        return d
