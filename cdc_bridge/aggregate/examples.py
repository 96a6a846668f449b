"""A documented example of a Python decider, plugged from a mapping by dotted path.

Use a Python decider when the YAML rules cannot say what the business means. Here a
Customer aggregate over one table, shop.customers, where

- an e-mail change is its own event (CustomerEmailChanged) and any other change is a
  CustomerProfileUpdated listing the changed fields; one UPDATE touching both emits both;
- a delete is a CustomerForgotten event WITHOUT personal data (right to be forgotten);
- an insert of a known customer, or an update/delete of an unknown one, is refused.

The mapping (mappings/customers.yaml, for example):

    aggregate: Customer
    decider: cdc_bridge.aggregate.examples:CustomerDecider
    root:
      table: shop.customers
      id: id
      fields: {id: customer_id, email:, name:, country:}

A Python decider is any class with `aggregate`, `initial_state()`, `decide()` and
`evolve()` (the Decider protocol, aggregate/decider.py), constructed with its
AggregateMapping. Keep it pure: no I/O, no clock, no randomness, state JSON-able, and
never mutate the state you are given. The runtime assigns sequence numbers, builds the
envelopes, stores the state and skips already-applied transactions.
"""

from __future__ import annotations

from typing import Any

from cdc_bridge.aggregate.decider import Decision, reject
from cdc_bridge.aggregate.event import EventDraft
from cdc_bridge.mapping.command import Command
from cdc_bridge.mapping.schema import AggregateMapping


class CustomerDecider:
    REGISTERED = "CustomerRegistered"
    EMAIL_CHANGED = "CustomerEmailChanged"
    PROFILE_UPDATED = "CustomerProfileUpdated"
    FORGOTTEN = "CustomerForgotten"

    def __init__(self, mapping: AggregateMapping):
        self.aggregate = mapping.aggregate

    def initial_state(self) -> dict[str, Any]:
        return {"exists": False, "profile": None}

    def decide(self, state: dict[str, Any], commands: list[Command]) -> Decision:
        decision = Decision()
        # Decide each command against the state the previous ones lead to.
        for cmd in commands:
            drafts = self._decide_one(state, cmd, decision)
            for draft in drafts:
                state = self.evolve(state, draft)
            decision.events.extend(drafts)
        return decision

    def _decide_one(self, state: dict[str, Any], cmd: Command, decision: Decision) -> list[EventDraft]:
        if cmd.entity != "root":
            decision.rejections.append(reject(cmd, "unknown_entity", f"Customer has no children ({cmd.entity!r})"))
            return []
        exists, profile = state["exists"], state["profile"]
        op = cmd.operation
        if op in ("insert", "snapshot") and not exists:
            return [EventDraft(self.REGISTERED, dict(cmd.payload), cmd.table)]
        if op == "insert":
            decision.rejections.append(reject(cmd, "duplicate_create", f"customer {cmd.aggregate_id} exists"))
            return []
        if not exists:
            reason = "delete_of_unknown_aggregate" if op == "delete" else "update_of_unknown_aggregate"
            decision.rejections.append(reject(cmd, reason, f"customer {cmd.aggregate_id} is unknown"))
            return []
        if op == "delete":
            return [EventDraft(self.FORGOTTEN, {"customer_id": cmd.aggregate_id}, cmd.table)]
        new = {**profile, **cmd.payload}
        drafts = []
        if new.get("email") != profile.get("email"):
            drafts.append(
                EventDraft(
                    self.EMAIL_CHANGED,
                    {"customer_id": cmd.aggregate_id, "from": profile.get("email"), "to": new.get("email")},
                    cmd.table,
                )
            )
        changed = sorted(k for k in new if k != "email" and new[k] != profile.get(k))
        if changed:
            drafts.append(EventDraft(self.PROFILE_UPDATED, {**new, "changed": changed}, cmd.table))
        return drafts

    def evolve(self, state: dict[str, Any], event: EventDraft) -> dict[str, Any]:
        # The state follows from the published events alone.
        t, data = event.event_type, event.data
        if t == self.REGISTERED:
            return {"exists": True, "profile": dict(data)}
        if t == self.EMAIL_CHANGED:
            return {"exists": True, "profile": {**state["profile"], "email": data["to"]}}
        if t == self.PROFILE_UPDATED:
            return {"exists": True, "profile": {k: v for k, v in data.items() if k != "changed"}}
        if t == self.FORGOTTEN:
            return {"exists": False, "profile": None}
        raise ValueError(f"CustomerDecider cannot evolve {t!r}")
