"""The breaking-change guard: the current schemas against a previous set (`schemas --check-against DIR`).

Breaking for a consumer: an event type removed, a topic changed, a field removed or renamed (the old
name is gone), a type narrowed (a value the old schema accepted is refused: null no longer allowed,
number -> integer, an enum losing a value). Adding event types, fields or accepted values is not.

Not compared (`uncompared`): a field the old set typed that the current one leaves open (any JSON value,
or a field absent from an open object): the current set cannot tell what the field will hold. That is
what a set built offline looks like next to one built live; the guard (contracts.guard) builds the
current set the way the old one was built and says when it could not.
"""

from __future__ import annotations

from typing import Any

from cdc_bridge.contracts.event_schemas import SchemaSet


def _types(s: dict[str, Any]) -> set[str]:
    if not s:
        return {"any"}
    if "anyOf" in s:
        out: set[str] = set()
        for x in s["anyOf"]:
            out |= _types(x)
        return out
    if "const" in s:
        return {"any"}
    t = s.get("type")
    if t is None:
        return {"any"}
    return set(t) if isinstance(t, list) else {t}


def _accepts(new: set[str], old: set[str]) -> set[str]:
    """Old types the new schema no longer accepts."""
    if "any" in new:
        return set()
    lost = old - new
    if "integer" in lost and "number" in new:
        lost.discard("integer")
    return lost


def _enum(s: dict[str, Any]) -> set | None:
    if "anyOf" in s:
        for x in s["anyOf"]:
            if "enum" in x:
                return set(x["enum"])
    return set(s["enum"]) if "enum" in s else None


def _compare(old: dict[str, Any], new: dict[str, Any], path: str, out: list[str], skipped: list[str]) -> None:
    old_types, new_types = _types(old), _types(new)
    if "any" in new_types and "any" not in old_types:
        # the old schema knew the type, the current one does not (an `auto` field offline): nothing to judge
        skipped.append(f"{path}: typed in the old set, any JSON value now")
        return
    lost = _accepts(new_types, old_types)
    if lost:
        out.append(f"{path}: type narrowed from {_fmt(old_types)} to {_fmt(new_types)}")
    old_enum, new_enum = _enum(old), _enum(new)
    if old_enum is not None and new_enum is not None and old_enum - new_enum:
        out.append(f"{path}: values {sorted(old_enum - new_enum)} removed")
    old_props = _props(old)
    new_props = _props(new)
    if old_props is not None and new_props is not None:
        for name, sub in old_props.items():
            if name in new_props:
                _compare(sub, new_props[name], f"{path}.{name}", out, skipped)
            elif _open(new):   # fields '*' offline: the columns, unknown here
                skipped.append(f"{path}.{name}: listed in the old set, unlisted in an open object now")
            else:
                out.append(f"{path}.{name}: field removed or renamed")
    if "items" in old and "items" in new:
        _compare(old["items"], new["items"], f"{path}[]", out, skipped)


def _fmt(ts: set[str]) -> str:
    return "any JSON value" if "any" in ts else " or ".join(sorted(ts))


def _open(s: dict[str, Any]) -> bool:
    for x in [s, *s.get("anyOf", [])]:
        if "properties" in x:
            return x.get("additionalProperties", True) is not False
    return True


def _props(s: dict[str, Any]) -> dict[str, Any] | None:
    if "properties" in s:
        return s["properties"]
    for x in s.get("anyOf", []):
        if "properties" in x:
            return x["properties"]
    return None


def breaking_changes(old: SchemaSet, new: SchemaSet) -> list[str]:
    """One line per aggregate and field, naming the event types it affects."""
    return _group(_all_changes(old, new)[0])


def uncompared(old: SchemaSet, new: SchemaSet) -> list[str]:
    """The fields the old set typed and the current one leaves open (not judged by breaking_changes), one line
    per aggregate and field like breaking_changes."""
    return _group(_all_changes(old, new)[1])


def _group(lines: list[str]) -> list[str]:
    grouped: dict[str, list[str]] = {}
    for line in lines:
        head, _, rest = line.partition(": ")
        aggregate, _, event_type = head.partition("/")
        if not event_type or not rest.startswith("data"):
            grouped.setdefault(line, [])
            continue
        path, _, problem = rest.partition(": ")
        parts = path.split(".")
        if len(parts) >= 3 and parts[1] == "changes":   # changes.<field>[.from|to]: the field itself
            path = ".".join(["data", parts[2]])
        grouped.setdefault(f"{aggregate} {path}: {problem}", []).append(event_type)
    out = []
    for line, types in grouped.items():
        uniq = list(dict.fromkeys(types))
        out.append(line + (f" (in {', '.join(uniq)})" if uniq else ""))
    return out


def _all_changes(old: SchemaSet, new: SchemaSet) -> tuple[list[str], list[str]]:
    out: list[str] = []
    skipped: list[str] = []
    for aggregate, events in old.events.items():
        if aggregate not in new.events:
            out.append(f"aggregate {aggregate}: removed (its event types {sorted(events)} are no longer published)")
            continue
        if old.topics.get(aggregate) != new.topics.get(aggregate):
            out.append(f"aggregate {aggregate}: topic changed from {old.topics.get(aggregate)!r} to "
                       f"{new.topics.get(aggregate)!r}")
        for event_type, schema in events.items():
            now = new.events[aggregate].get(event_type)
            if now is None:
                out.append(f"{aggregate}/{event_type}: event type removed")
                continue
            _compare(schema["properties"]["data"], now["properties"]["data"], f"{aggregate}/{event_type}: data",
                     out, skipped)
    return out, skipped
