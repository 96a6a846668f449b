"""The declarative decider: the YAML mapping's event rules as a Decider.

State of one aggregate instance (JSON):

    {"exists": bool,            # the root row is known and not deleted
     "deleted": bool,           # the root was deleted (the record stays as a tombstone)
     "soft_deleted": bool,      # (only when true) deleted by leaving the mapping's `where`: the
                                # children stay, dormant, for the root's return
     "root": {field: value} | None,
     "children": {"lines": {"<line id>": {field: value}, ...}, ...},
     "held": {"lines": {"<line id>": {"since", "fields", "table", "txn_id", "position"}}}}

Rules (docs/aggregates.md tells them with examples):

- The source transaction is the unit. A root that comes into existence in a
  transaction is announced by ONE created (or snapshotted) event carrying its state at
  the end of the transaction: every child added, changed or removed and every root
  update in the same transaction folds into it, and so do the children held before.
  A root deleted in a transaction is announced by ONE deleted event carrying its last
  known fields and children (including children removed earlier in the same
  transaction); other events of the instance drafted earlier in that transaction are
  dropped. A child added in the transaction and changed later in it is one added
  event with its final fields; added and removed in it, nothing.
- Otherwise events follow the commands in order: root update -> per field the first
  matching transition's event (transitions of several fields matching one update each
  fire, in the order written, as separate events), else the updated event; an update
  that changes no mapped field
  emits nothing. Child add/change/remove -> added/changed/removed, carrying
  data[<aggregate_snake>] = the root's enrich fields as of the end of the transaction.
- A child whose root does not exist is held (internal events, nothing published);
  updates and deletes of a held child change it silently.
- A root that leaves the mapping's `where` (a soft delete: Command.soft) is deleted as
  above, but its children stay in the state, dormant: their changes meanwhile are applied
  silently, and when the root comes back (an insert) its created event carries them.
- Refused commands become dead letters: duplicate_create, update_of_unknown_aggregate,
  delete_of_unknown_aggregate, update_of_unknown_child, delete_of_unknown_child,
  unknown_entity.
"""

from __future__ import annotations

import re
from typing import Any

from cdc_bridge.aggregate.decider import HELD, Decision, reject
from cdc_bridge.aggregate.event import EventDraft
from cdc_bridge.aggregate.exceptions import MappingRuleError
from cdc_bridge.mapping.command import Command, DeadLetter
from cdc_bridge.mapping.schema import AggregateMapping, ChildMapping, TableMapping

ROOT = "root"

# Internal (never published) event types; mapping event names start with a letter, so they cannot clash.
HELD_CHILD = "_ChildHeld"
HELD_CHILD_CHANGED = "_HeldChildChanged"
HELD_CHILD_RELEASED = "_HeldChildReleased"
SNAPSHOT_APPLIED = "_SnapshotApplied"        # a snapshot of a new root when emit_snapshot_events is off
DELETED_IN_CREATING_TXN = "_CreatedAndDeleted"
DORMANT_CHILD_CHANGED = "_DormantChildChanged"  # a child of a soft-deleted root, set or removed silently


def singular_pascal(name: str) -> str:
    """'lines' -> 'Line', 'order_items' -> 'OrderItem', 'categories' -> 'Category' (the mapping format's rule)."""
    try:
        from cdc_bridge.mapping.schema import entity_from_collection
    except ImportError:  # an older mapping module
        word = name[:-3] + "y" if name.endswith("ies") else name[:-2] if re.search(r"(ss|sh|ch|x|z)es$", name) \
            else name[:-1] if name.endswith("s") and not name.endswith("ss") else name
        return "".join(p[:1].upper() + p[1:] for p in word.split("_") if p)
    return entity_from_collection(name)


def field_name(table: TableMapping, name: str) -> str:
    """A rule's field reference as the field name in events (a column name is translated)."""
    if isinstance(table.fields, dict) and name in table.fields:
        return table.fields[name].name or name
    return name


def mapped_names(table: TableMapping) -> list[str] | None:
    if not isinstance(table.fields, dict):
        return None
    return [spec.name or col for col, spec in table.fields.items()] + list(getattr(table, "lookups", {}) or {})


def same_value(a: Any, b: Any) -> bool:
    """Equality of a row value with a YAML rule value (a DECIMAL "12.50" is a string in rows)."""
    if a == b:
        return True
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, (int, float, str)) and isinstance(b, (int, float, str)) and type(a) is not type(b):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return str(a) == str(b)
    return False


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{field: {"from": old, "to": new}} for each field whose value differs."""
    out: dict[str, dict[str, Any]] = {}
    for k, v in new.items():
        if k in old:
            if old[k] != v:
                out[k] = {"from": old[k], "to": v}
        elif v is not None:   # a field the state did not have yet (the mapping grew)
            out[k] = {"from": None, "to": v}
    return out


class _ChildRules:
    def __init__(self, child: ChildMapping, mapping: AggregateMapping):
        self.name = child.name
        self.table = child.table
        named = getattr(mapping, "child_event_type", None)   # the mapping format's defaults, when it has them
        if named is not None:
            self.added, self.changed, self.removed = (named(child, k) for k in ("added", "changed", "removed"))
        else:
            entity = getattr(child, "entity", None) or singular_pascal(child.name)
            self.added = child.events.added or f"{mapping.aggregate}{entity}Added"
            self.changed = child.events.changed or f"{mapping.aggregate}{entity}Changed"
            self.removed = child.events.removed or f"{mapping.aggregate}{entity}Removed"
        self.enrich = [field_name(mapping.root, f) for f in child.enrich]


class _Transition:
    def __init__(self, field: str, from_: Any, to: Any, event: str):
        self.field, self.from_, self.to, self.event = field, from_, to, event

    def matches(self, changes: dict[str, dict[str, Any]]) -> bool:
        ch = changes.get(self.field)
        if ch is None:
            return False
        return (self.from_ == "*" or same_value(ch["from"], self.from_)) and (
            self.to == "*" or same_value(ch["to"], self.to)
        )


class DeclarativeDecider:
    """Decides events from the mapping's rules (see the module docstring and docs/aggregates.md)."""

    def __init__(self, mapping: AggregateMapping):
        self.mapping = mapping
        self.aggregate = mapping.aggregate
        self.context_key = mapping.context_key
        self.root_table = mapping.root.table
        agg = mapping.aggregate
        named = getattr(mapping, "root_event_type", None)   # the mapping format's defaults, when it has them
        if named is None:
            def named(kind: str) -> str:
                return getattr(mapping.root.events, kind) or f"{agg}{kind.capitalize()}"
        self.created = named("created")
        self.updated = named("updated")
        self.deleted = named("deleted")
        self.snapshotted = named("snapshotted")
        self.emit_snapshot_events = mapping.emit_snapshot_events
        self.max_embedded = getattr(mapping, "max_embedded_children", 1000)
        self.tombstone_on_delete = bool(getattr(mapping, "tombstone_on_delete", False))
        self.transitions = [
            _Transition(field_name(mapping.root, t.field), t.from_, t.to, t.event) for t in mapping.root.transitions
        ]
        self.children = {c.name: _ChildRules(c, mapping) for c in mapping.children}
        self._check_names()

    def _check_names(self) -> None:
        """Payload keys the rules add must not shadow mapped fields."""
        problems: list[str] = []
        root_names = mapped_names(self.mapping.root)
        if root_names is not None:
            for n in root_names:
                if n == "changes":
                    problems.append("root field 'changes' clashes with the update events' changes")
                if n in self.children:
                    problems.append(f"root field {n!r} clashes with the child collection {n!r}")
            for t in self.transitions:
                if t.field not in root_names:
                    problems.append(f"transition field {t.field!r} is not a root field ({', '.join(root_names)})")
            for c in self.children.values():
                for f in c.enrich:
                    if f not in root_names:
                        problems.append(f"children {c.name!r}: enrich field {f!r} is not a root field")
        for c in self.mapping.children:
            names = mapped_names(c) or []
            if "changes" in names:
                problems.append(f"children {c.name!r}: field 'changes' clashes with the changed events' changes")
            if self.context_key in names:
                problems.append(f"children {c.name!r}: field {self.context_key!r} clashes with the root context key")
        if problems:
            raise MappingRuleError(f"aggregate {self.aggregate}: " + "; ".join(problems))

    # ------------------------------------------------------------------ protocol

    def initial_state(self) -> dict[str, Any]:
        return {"exists": False, "deleted": False, "root": None, "children": {}, HELD: {}}

    def decide(self, state: dict[str, Any], commands: list[Command]) -> Decision:
        work = _Txn(self, state)
        for cmd in commands:
            if cmd.aggregate != self.aggregate:
                work.rejections.append(reject(cmd, "wrong_aggregate", f"command for {cmd.aggregate} sent to {self.aggregate}"))
            elif cmd.entity == ROOT:
                work.root_command(cmd)
            elif cmd.entity in self.children:
                work.child_command(self.children[cmd.entity], cmd)
            else:
                work.rejections.append(
                    reject(cmd, "unknown_entity", f"{self.aggregate} has no child collection {cmd.entity!r}")
                )
        return work.finish()

    def evolve(self, state: dict[str, Any], event: EventDraft) -> dict[str, Any]:
        m = event.meta
        kind = m.get("kind")
        if kind in ("created", "snapshotted"):
            return {
                "exists": True,
                "deleted": False,
                "root": dict(m["root"]),
                "children": {n: dict(c) for n, c in m["children"].items()},
                HELD: {},
            }
        if kind == "deleted":
            if "dormant" in m:   # a soft delete: the children wait for the root's return
                return {"exists": False, "deleted": True, "soft_deleted": True, "root": None,
                        "children": {n: dict(c) for n, c in m["dormant"].items()}, HELD: {}}
            return {"exists": False, "deleted": True, "root": None, "children": {}, HELD: {}}
        if kind == "updated":
            return {**state, "root": dict(m["root"])}
        if kind in ("child_added", "child_changed", "child_removed"):
            entity, entity_id = m["entity"], m["entity_id"]
            children = dict(state.get("children") or {})
            coll = dict(children.get(entity) or {})
            if kind == "child_removed":
                coll.pop(entity_id, None)
            else:
                coll[entity_id] = dict(m["fields"])
            children[entity] = coll
            return {**state, "children": children}
        if kind in ("held", "held_changed", "held_released"):
            entity, entity_id = m["entity"], m["entity_id"]
            held = dict(state.get(HELD) or {})
            coll = dict(held.get(entity) or {})
            if kind == "held":
                coll[entity_id] = dict(m["entry"])
            elif kind == "held_changed":
                coll[entity_id] = {**coll[entity_id], "fields": dict(m["fields"])}
            else:
                coll.pop(entity_id, None)
            if coll:
                held[entity] = coll
            else:
                held.pop(entity, None)
            return {**state, HELD: held}
        raise ValueError(f"{self.aggregate}: cannot evolve unknown event {event.event_type!r} (kind {kind!r})")

    # ------------------------------------------------------------------ payloads

    def context(self, root: dict[str, Any] | None, child: _ChildRules) -> dict[str, Any]:
        root = root or {}
        return {f: root.get(f) for f in child.enrich}

    def full_data(self, root: dict[str, Any], children: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
        data = dict(root)
        for name in self.children:
            data[name] = [dict(f) for f in (children.get(name) or {}).values()]
        return data

    def transition_events(self, changes: dict[str, dict[str, Any]]) -> list[str]:
        """The events of an update: per field, the first matching transition (in the order written);
        transitions of different fields that match the same update each fire, in the order written.
        No match: the updated event."""
        fired: list[str] = []
        fields: set[str] = set()
        for t in self.transitions:
            if t.field not in fields and t.matches(changes):
                fields.add(t.field)
                fired.append(t.event)
        return fired or [self.updated]


def _what(d: DeclarativeDecider, cmd: Command, name: str) -> str:
    """The child a rejection is about, e.g. "Order 7 lines 12" (only built when rejecting)."""
    return f"{d.aggregate} {cmd.aggregate_id} {name} {cmd.entity_id}"


class _Txn:
    """One decide() call: a working copy of the state and the drafts so far (with folding)."""

    def __init__(self, d: DeclarativeDecider, state: dict[str, Any]):
        self.d = d
        self.exists = bool(state.get("exists"))
        self.deleted = bool(state.get("deleted"))
        self.soft = bool(state.get("soft_deleted"))   # children dormant, waiting for the root's return
        self.root: dict[str, Any] | None = dict(state["root"]) if state.get("root") is not None else None
        self.children: dict[str, dict[str, dict[str, Any]]] = {
            n: dict(c) for n, c in (state.get("children") or {}).items()
        }
        self.held: dict[str, dict[str, dict[str, Any]]] = {n: dict(c) for n, c in (state.get(HELD) or {}).items()}
        self.out: list[EventDraft | None] = []
        self.rejections: list[DeadLetter] = []
        self.created_at: int | None = None        # index of this txn's created/snapshotted draft (folding)
        self.segment_start = 0                    # first draft of the root's current lifetime in this txn
        self.added_at: dict[tuple[str, str], int] = {}
        self.removed: dict[str, dict[str, dict[str, Any]]] = {}  # children removed in this txn (for a delete)

    def emit(self, draft: EventDraft) -> int:
        self.out.append(draft)
        return len(self.out) - 1

    # ------------------------------------------------------------------ root

    def root_command(self, cmd: Command) -> None:
        d = self.d
        op = cmd.operation
        if op in ("insert", "snapshot") and not self.exists:
            self._create(cmd)
        elif op == "insert":
            self.rejections.append(reject(cmd, "duplicate_create", f"{d.aggregate} {cmd.aggregate_id} already exists"))
        elif op in ("update", "snapshot"):
            if not self.exists:
                why = "was deleted" if self.deleted else "was never seen"
                self.rejections.append(
                    reject(cmd, "update_of_unknown_aggregate", f"update of {d.aggregate} {cmd.aggregate_id}, which {why}")
                )
                return
            self._update(cmd)
        elif op == "delete":
            if not self.exists:
                why = "is already deleted" if self.deleted else "was never seen"
                self.rejections.append(
                    reject(cmd, "delete_of_unknown_aggregate", f"delete of {d.aggregate} {cmd.aggregate_id}, which {why}")
                )
                return
            self._delete(cmd)

    def _create(self, cmd: Command) -> None:
        d = self.d
        # Children held before the root arrived join it now, oldest first.
        for name, entries in self.held.items():
            coll = self.children.setdefault(name, {})
            for cid, entry in sorted(entries.items(), key=lambda kv: kv[1]["since"]):
                coll[cid] = dict(entry["fields"])
        self.held = {}
        self.exists, self.deleted, self.soft = True, False, False   # dormant children (a soft delete) are back
        self.root = dict(cmd.payload)
        if cmd.operation == "snapshot":
            kind = "snapshotted"
            name, internal = (d.snapshotted, False) if d.emit_snapshot_events else (SNAPSHOT_APPLIED, True)
        else:
            kind, name, internal = "created", d.created, False
        # data and meta are filled in finish(): the event carries the state at the end of the txn.
        self.created_at = self.emit(EventDraft(name, {}, cmd.table, internal=internal, meta={"kind": kind}))
        self.segment_start = self.created_at
        self.added_at.clear()
        self.removed.clear()

    def _update(self, cmd: Command) -> None:
        assert self.root is not None
        new = {**self.root, **cmd.payload}
        if self.created_at is not None:
            self.root = new
            return
        changes = diff(self.root, new)
        self.root = new
        if not changes:
            return
        for name in self.d.transition_events(changes):   # each its own event of this source transaction
            self.emit(EventDraft(name, {**new, "changes": changes}, cmd.table, meta={"kind": "updated", "root": new}))

    def _delete(self, cmd: Command) -> None:
        d = self.d
        assert self.root is not None
        # a soft delete (the row left the `where`): the children stay, dormant (see the module doc)
        dormant = {"dormant": {n: dict(c) for n, c in self.children.items()}} if cmd.soft else {}
        if self.created_at is not None:
            # Created and deleted in one transaction: nothing to announce.
            for i in range(self.created_at, len(self.out)):
                self.out[i] = None
            self.emit(EventDraft(DELETED_IN_CREATING_TXN, {}, cmd.table, internal=True,
                                 meta={"kind": "deleted", **dormant}))
        else:
            # The deleted event is the transaction's outcome for this root's lifetime.
            for i in range(self.segment_start, len(self.out)):
                self.out[i] = None
            last_root = {**self.root, **cmd.payload}
            last_children: dict[str, dict[str, dict[str, Any]]] = {}
            for name in d.children:
                coll = dict(self.children.get(name) or {})
                for cid, fields in (self.removed.get(name) or {}).items():
                    coll.setdefault(cid, fields)
                last_children[name] = coll
            meta: dict[str, Any] = {"kind": "deleted", **dormant}
            if d.tombstone_on_delete:
                meta["tombstone"] = True
            # a large aggregate: the children beyond max_embedded_children leave first, one removed event each
            embedded, overflow = self._split(last_children)
            context = d.context_key
            for name, cid, fields in overflow:
                rules = d.children[name]
                self.emit(EventDraft(rules.removed, {**fields, context: d.context(last_root, rules)}, rules.table,
                                     meta={"kind": "child_removed", "entity": name, "entity_id": cid,
                                           "fields": dict(fields), "context_set": True}))
            self.emit(EventDraft(d.deleted, d.full_data(last_root, embedded), cmd.table, meta=meta))
        self.exists, self.deleted, self.soft = False, True, cmd.soft
        self.root = None
        if not cmd.soft:
            self.children = {}
        self.held = {}
        self.created_at = None
        self.segment_start = len(self.out)
        self.added_at.clear()
        self.removed.clear()

    # ------------------------------------------------------------------ children

    def child_command(self, rules: _ChildRules, cmd: Command) -> None:
        if self.exists:
            self._child_of_existing(rules, cmd)
        elif self.soft:
            self._child_of_dormant(rules, cmd)
        else:
            self._child_of_missing(rules, cmd)

    def _child_of_dormant(self, rules: _ChildRules, cmd: Command) -> None:
        """A child of a soft-deleted root: kept up to date silently, for the root's return."""
        name, cid = rules.name, cmd.entity_id
        coll = self.children.setdefault(name, {})
        meta = {"entity": name, "entity_id": cid}
        if cmd.operation == "delete":
            if coll.pop(cid, None) is not None:
                self.emit(EventDraft(DORMANT_CHILD_CHANGED, {}, cmd.table, internal=True,
                                     meta={**meta, "kind": "child_removed"}))
            return
        fields = {**(coll.get(cid) or {}), **cmd.payload}
        coll[cid] = fields
        self.emit(EventDraft(DORMANT_CHILD_CHANGED, {}, cmd.table, internal=True,
                             meta={**meta, "kind": "child_changed", "fields": fields}))

    def _child_of_existing(self, rules: _ChildRules, cmd: Command) -> None:
        d = self.d
        name, cid, op = rules.name, cmd.entity_id, cmd.operation
        coll = self.children.setdefault(name, {})
        cur = coll.get(cid)
        if op == "insert" and cur is not None:
            self.rejections.append(reject(cmd, "duplicate_create", f"{_what(d, cmd, name)} already exists"))
            return
        if op in ("insert", "snapshot") and cur is None:
            coll[cid] = dict(cmd.payload)
            if self.created_at is None:
                self.added_at[(name, cid)] = self.emit(
                    EventDraft(rules.added, {}, cmd.table, meta={"kind": "child_added", "entity": name, "entity_id": cid})
                )
            return
        if cur is None:
            reason = "update_of_unknown_child" if op == "update" else "delete_of_unknown_child"
            self.rejections.append(reject(cmd, reason, f"{op} of {_what(d, cmd, name)}, which was never seen"))
            return
        if op in ("update", "snapshot"):
            new = {**cur, **cmd.payload}
            changes = diff(cur, new)
            coll[cid] = new
            if not changes or self.created_at is not None or (name, cid) in self.added_at:
                return
            self.emit(
                EventDraft(
                    rules.changed,
                    {**new, "changes": changes},
                    cmd.table,
                    meta={"kind": "child_changed", "entity": name, "entity_id": cid, "fields": new},
                )
            )
            return
        # delete
        last = {**cur, **cmd.payload}
        del coll[cid]
        if self.created_at is not None:
            return
        if (name, cid) in self.added_at:
            self.out[self.added_at.pop((name, cid))] = None
            return
        self.removed.setdefault(name, {})[cid] = last
        self.emit(
            EventDraft(
                rules.removed,
                dict(last),
                cmd.table,
                meta={"kind": "child_removed", "entity": name, "entity_id": cid},
            )
        )

    def _child_of_missing(self, rules: _ChildRules, cmd: Command) -> None:
        d = self.d
        name, cid, op = rules.name, cmd.entity_id, cmd.operation
        coll = self.held.setdefault(name, {})
        entry = coll.get(cid)
        meta_base = {"entity": name, "entity_id": cid}
        if op == "insert" and entry is not None:
            self.rejections.append(reject(cmd, "duplicate_create", f"{_what(d, cmd, name)} is already held"))
        elif op in ("insert", "snapshot") and entry is None:
            entry = {
                "since": cmd.commit_ts,
                "fields": dict(cmd.payload),
                "table": cmd.table,
                "txn_id": cmd.txn_id,
                "position": cmd.position.to_dict() if cmd.position else None,
            }
            coll[cid] = entry
            self.emit(EventDraft(HELD_CHILD, {}, cmd.table, internal=True, meta={**meta_base, "kind": "held", "entry": entry}))
        elif op in ("update", "snapshot"):
            if entry is None:
                why = "was deleted" if self.deleted else "does not exist"
                self.rejections.append(
                    reject(cmd, "update_of_unknown_child", f"update of {_what(d, cmd, name)}, never seen, and the {d.aggregate} {why}")
                )
                return
            fields = {**entry["fields"], **cmd.payload}
            coll[cid] = {**entry, "fields": fields}
            self.emit(
                EventDraft(HELD_CHILD_CHANGED, {}, cmd.table, internal=True, meta={**meta_base, "kind": "held_changed", "fields": fields})
            )
        elif op == "delete":
            if entry is not None:
                del coll[cid]
                self.emit(EventDraft(HELD_CHILD_RELEASED, {}, cmd.table, internal=True, meta={**meta_base, "kind": "held_released"}))
            elif not self.deleted:
                self.rejections.append(
                    reject(cmd, "delete_of_unknown_child", f"delete of {_what(d, cmd, name)}, never seen, and the {d.aggregate} does not exist")
                )
            # else: the root was deleted; its deleted event carried this child already.
        if not coll:
            self.held.pop(name, None)

    # ------------------------------------------------------------------ result

    def _split(self, children: dict[str, dict[str, dict[str, Any]]]
               ) -> tuple[dict[str, dict[str, dict[str, Any]]], list[tuple[str, str, dict[str, Any]]]]:
        """(the first max_embedded_children children, in collection and insertion order; the others)."""
        room = self.d.max_embedded
        embedded: dict[str, dict[str, dict[str, Any]]] = {}
        overflow: list[tuple[str, str, dict[str, Any]]] = []
        for name, coll in children.items():
            kept = embedded.setdefault(name, {})
            for cid, fields in coll.items():
                if room > 0:
                    kept[cid] = fields
                    room -= 1
                else:
                    overflow.append((name, cid, fields))
        return embedded, overflow

    def finish(self) -> Decision:
        d = self.d
        root = self.root
        for name_cid, idx in self.added_at.items():
            draft = self.out[idx]
            if draft is not None:
                fields = self.children[name_cid[0]][name_cid[1]]
                draft.data = dict(fields)
                draft.meta["fields"] = dict(fields)
        if self.created_at is not None:
            draft = self.out[self.created_at]
            assert draft is not None and root is not None
            children = {name: dict(self.children.get(name) or {}) for name in d.children}
            embedded, overflow = self._split(children)
            draft.data = d.full_data(root, embedded)
            draft.meta.update(root=dict(root), children=children)   # the state holds all of them
            if overflow and not draft.internal:
                # a large aggregate: the other children follow right after it, one added event each
                at = self.created_at + 1
                self.out[at:at] = [EventDraft(d.children[name].added, dict(fields), d.children[name].table,
                                              meta={"kind": "child_added", "entity": name, "entity_id": cid,
                                                    "fields": dict(fields)})
                                   for name, cid, fields in overflow]
        # Child events carry the root's context as of the end of the transaction.
        for draft in self.out:
            if draft is not None and draft.meta.get("kind", "").startswith("child_") and not draft.meta.get("context_set"):
                draft.data[d.context_key] = d.context(root, d.children[draft.meta["entity"]])
        return Decision([x for x in self.out if x is not None], self.rejections)


__all__ = ["DeclarativeDecider", "diff", "field_name", "singular_pascal"]
