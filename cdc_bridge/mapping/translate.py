"""Row changes -> commands: pure, precompiled per table, no pydantic validation on the hot path.

Rules (docs/mappings.md explains them for mapping authors):

* Rows of tables no mapping names are ignored.
* `where` decides whether a row is captured. insert/snapshot test the after image,
  delete the before image. An update tests both:
      before in, after in   -> update
      before out, after in  -> insert (the row enters the capture, e.g. un-soft-delete)
      before in, after out  -> delete (the row leaves, e.g. soft delete), payload = before
      neither               -> ignored
* aggregate_id: the root's `id` columns (a child's `parent_key` columns), entity_id: the
  table's `id` columns; values as str, composite keys joined with ":". A NULL (or absent)
  key column -> dead letter `null_key`.
* An update that changes the aggregate id (a child moved to another parent, or a root's id
  changed) or the entity id becomes delete(before) for the old ids followed by
  insert(after) for the new ones: both carry the same `index`.
* An update whose mapped fields are all unchanged (only unmapped or excluded columns
  changed) is dropped here (drop_unchanged_updates=True, the default): it could not
  produce an event anyway.
* Field coercion by FieldSpec.type; NULL stays None for every type. A value that cannot be
  coerced turns the whole row change into a dead letter `coercion_failed`; a mapped column
  missing from the row image -> `missing_column`. The rest of the transaction goes on.
* command_type: the table's `commands:` or AggregateMapping.command_type's defaults.
  `index` is the row change's ordinal in txn.changes (unmapped rows included).
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from cdc_bridge.mapping.command import Command, DeadLetter
from cdc_bridge.mapping.geometry import to_geojson, to_wkt
from cdc_bridge.mapping.schema import AggregateMapping, ChildMapping, Condition, TableMapping
from cdc_bridge.source.transaction import RowChange, SourceTransaction

# --------------------------------------------------------------------------- coercion
# Each coercer gets a non-None value and returns the coerced value or raises (ValueError, ...).


def to_int(v: Any) -> int:
    t = type(v)
    if t is int:
        return v
    if t is bool:
        return int(v)
    if t is float:
        if v.is_integer():
            return int(v)
        raise ValueError("has a fractional part")
    if t is str:
        s = v.strip()
        try:
            return int(s)
        except ValueError:
            d = _parse_decimal(s)  # "12.00" from a DECIMAL column
            if d.is_finite() and d == d.to_integral_value():
                return int(d)
            raise ValueError("not an integer") from None
    raise TypeError(f"cannot make an integer of {t.__name__}")


def _parse_decimal(s: str) -> Decimal:
    try:
        return Decimal(s)
    except InvalidOperation:
        raise ValueError("not a number") from None


def to_float(v: Any) -> float:
    t = type(v)
    if t is bool:
        raise TypeError("a boolean is not a number")
    if t in (int, float):
        f = float(v)
    elif t is str:
        try:
            f = float(v.strip())
        except ValueError:
            raise ValueError("not a number") from None
    else:
        raise TypeError(f"cannot make a number of {t.__name__}")
    if not math.isfinite(f):
        raise ValueError("not a finite number")
    return f


# A decimal string already in the form to_decimal produces (DECIMAL columns arrive so): no leading
# zeros, no sign on zero, no exponent, no spaces. It is returned as is, skipping Decimal's parse+format.
_PLAIN_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?").fullmatch
_NEGATIVE_ZERO = re.compile(r"-0(?:\.0+)?").fullmatch


def to_decimal(v: Any) -> str:
    """Exact decimal string in plain notation, scale as given: "12.50", "1E+2" -> "100", -0.00 -> "0.00"."""
    t = type(v)
    if t is str:
        if _PLAIN_DECIMAL(v) is not None and _NEGATIVE_ZERO(v) is None:
            return v
        d = _parse_decimal(v.strip())
    elif t is int:
        return str(v)
    elif t is float:
        d = Decimal(repr(v))  # shortest repr: 0.1 -> "0.1", not the binary expansion
    else:
        raise TypeError(f"cannot make a decimal of {t.__name__}")
    if not d.is_finite():
        raise ValueError("not a finite number")
    if d.is_zero():
        d = d.copy_abs()
    return format(d, "f")


def to_str(v: Any) -> str:
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t in (int, float):
        return str(v)
    if t in (dict, list):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v)


_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def to_bool(v: Any) -> bool:
    t = type(v)
    if t is bool:
        return v
    if t is int:
        if v in (0, 1):
            return bool(v)
        raise ValueError("only 0 and 1 are booleans")
    if t is str:
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ValueError("not a boolean (1/0, true/false, yes/no, y/n, on/off)")
    raise TypeError(f"cannot make a boolean of {t.__name__}")


def _is_zero_date(s: str) -> bool:
    return s.startswith("0000-00-00")


def _render_datetime(dt: datetime) -> str:
    if dt.tzinfo is not None:
        return dt.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"
    return dt.isoformat()


def to_datetime(v: Any) -> str | None:
    """ISO 8601 "YYYY-MM-DDTHH:MM:SS[.ffffff]" (+"Z" when the input has a zone, converted to UTC).

    Numbers are Unix epoch seconds (UTC, "Z"); MySQL's zero date becomes None.
    """
    t = type(v)
    if t is str:
        s = v.strip()
        if _is_zero_date(s):
            return None
        if s.isdigit():
            return _render_datetime(datetime.fromtimestamp(int(s), tz=timezone.utc))
        return _render_datetime(datetime.fromisoformat(s))
    if t in (int, float):
        return _render_datetime(datetime.fromtimestamp(v, tz=timezone.utc))
    raise TypeError(f"cannot make a datetime of {t.__name__}")


def to_date(v: Any) -> str | None:
    """"YYYY-MM-DD"; a datetime is cut to its date (in UTC if it has a zone); numbers are epoch seconds."""
    t = type(v)
    if t is str:
        s = v.strip()
        if _is_zero_date(s):
            return None
        if len(s) == 10:
            return date.fromisoformat(s).isoformat()
        if s.isdigit():
            return datetime.fromtimestamp(int(s), tz=timezone.utc).date().isoformat()
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc)
        return dt.date().isoformat()
    if t in (int, float):
        return datetime.fromtimestamp(v, tz=timezone.utc).date().isoformat()
    raise TypeError(f"cannot make a date of {t.__name__}")


def to_json(v: Any) -> Any:
    """A string is parsed as JSON; JSON columns (already dict/list) and other values pass unchanged."""
    if type(v) is str:
        return json.loads(v, parse_constant=_reject_constant)
    return v


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


COERCERS: dict[str, Callable[[Any], Any] | None] = {
    "auto": None, "str": to_str, "int": to_int, "float": to_float, "decimal": to_decimal,
    "bool": to_bool, "datetime": to_datetime, "date": to_date, "json": to_json,
    "wkt": to_wkt, "geojson": to_geojson,   # GEOMETRY columns (mapping/geometry.py)
}


# --------------------------------------------------------------------------- filters


def values_equal(value: Any, const: Any) -> bool:
    """Equality of a row value and a `where` constant; numbers compare by value across types
    ("12.50" == 12.5, "7" == 7), strings exactly (case-sensitive)."""
    if value == const:
        return True
    if value is None or const is None or type(value) is bool or type(const) is bool:
        return False
    if type(value) is not type(const) and isinstance(value, (int, float, str)) and isinstance(const, (int, float, str)):
        try:
            return Decimal(str(value).strip()) == Decimal(str(const).strip())
        except (InvalidOperation, ValueError):
            return False
    return False


def _condition_tests(cond: Condition) -> list[Callable[[Any], bool]]:
    tests: list[Callable[[Any], bool]] = []
    for op, const in cond.operators().items():
        if op == "is_null":
            tests.append((lambda v: v is None) if const else (lambda v: v is not None))
        elif op == "eq":
            tests.append((lambda v: v is None) if const is None else (lambda v, c=const: values_equal(v, c)))
        elif op == "ne":
            tests.append((lambda v: v is not None) if const is None
                         else (lambda v, c=const: not values_equal(v, c)))
        elif op == "in":
            consts = tuple(const or ())
            tests.append(lambda v, cs=consts: any(values_equal(v, c) for c in cs))
        elif op == "not_in":
            consts = tuple(const or ())
            tests.append(lambda v, cs=consts: not any(values_equal(v, c) for c in cs))
    return tests


# --------------------------------------------------------------------------- commands without validation

_new = object.__new__
_setattr = object.__setattr__


def _construct_fast(**values: Any) -> Command:
    """Command.model_construct with every field given, minus its per-call loops over the model's fields
    (4 µs -> 1.3 µs a command, a third of the translation's cost). Sets exactly the attributes
    model_construct sets; checked against it at import, model_construct is used if they ever differ."""
    obj = _new(Command)
    _setattr(obj, "__dict__", values)
    _setattr(obj, "__pydantic_fields_set__", set(values))
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


def _pick_constructor() -> Callable[..., Command]:
    from cdc_bridge.source.position import SourcePosition

    sample = dict(command_type="C", aggregate="A", aggregate_id="1", entity="root", entity_id="1",
                  operation="insert", payload={"a": 1}, before=None, table="s.t",
                  position=SourcePosition(None, "f.000001", 4), txn_id="t", commit_ts=1.0, index=0, soft=False)
    try:
        fast, slow = _construct_fast(**sample), Command.model_construct(**sample)
        same = all(getattr(fast, a, None) == getattr(slow, a, None) for a in (
            "__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"))
        if same and fast == slow and fast.model_dump() == slow.model_dump():
            return _construct_fast
    except Exception:  # noqa: BLE001 - any surprise: stay on the public API
        pass
    return Command.model_construct


_make_command = _pick_constructor()


# --------------------------------------------------------------------------- commands across a process boundary
# The binlog reader process translates (source.reader: process) and sends commands as plain
# tuples: pickling the pydantic model costs as much as translating, a tuple a fraction.
# position, txn_id and commit_ts are the transaction's and travel once with it.

def command_to_wire(c: Command) -> tuple:
    return (c.command_type, c.aggregate, c.aggregate_id, c.entity, c.entity_id, c.operation,
            c.payload, c.before, c.table, c.index, c.soft)


def commands_from_wire(wire: list[tuple], position: Any, txn_id: str, commit_ts: float) -> list[Command]:
    make = _make_command
    if make is not _construct_fast:   # pydantic changed under us: the public API
        return [make(command_type=ct, aggregate=agg, aggregate_id=agg_id, entity=ent, entity_id=ent_id,
                     operation=op, payload=payload, before=before, table=table, position=position,
                     txn_id=txn_id, commit_ts=commit_ts, index=index, soft=soft)
                for ct, agg, agg_id, ent, ent_id, op, payload, before, table, index, soft in wire]
    # _construct_fast unrolled (no **kwargs dict, the field-name set copied from a template): this
    # runs once per command on the bridge's main loop, where it was a tenth of the GIL's time
    new, setattr_, names = _new, _setattr, _COMMAND_FIELDS
    out = []
    append = out.append
    for ct, agg, agg_id, ent, ent_id, op, payload, before, table, index, soft in wire:
        obj = new(Command)
        setattr_(obj, "__dict__", {"command_type": ct, "aggregate": agg, "aggregate_id": agg_id, "entity": ent,
                                   "entity_id": ent_id, "operation": op, "payload": payload, "before": before,
                                   "table": table, "position": position, "txn_id": txn_id, "commit_ts": commit_ts,
                                   "index": index, "soft": soft})
        setattr_(obj, "__pydantic_fields_set__", names.copy())
        setattr_(obj, "__pydantic_extra__", None)
        setattr_(obj, "__pydantic_private__", None)
        append(obj)
    return out


_COMMAND_FIELDS = {"command_type", "aggregate", "aggregate_id", "entity", "entity_id", "operation", "payload",
                   "before", "table", "position", "txn_id", "commit_ts", "index", "soft"}
assert _COMMAND_FIELDS == set(Command.model_fields), "Command's fields changed: update commands_from_wire"


# --------------------------------------------------------------------------- per table


class _RowFailure(Exception):
    def __init__(self, reason: str, detail: str, aggregate_id: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.aggregate_id = aggregate_id


def _key_part(v: Any) -> str:
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "1" if v else "0"
    return str(v)


def _compile_payload(fields: tuple[tuple[str, str, Callable[[Any], Any] | None, str], ...],
                     optional: frozenset[str] = frozenset()) -> Callable[[dict], dict]:
    """The field plan as one generated function, `row -> {name: coerced value}`, in field order.

    The per-field loop with its try/except cost about half of the translation; a single dict display
    costs a third of that. It raises on a missing column or a failed coercion; the caller then runs
    the loop, which raises the _RowFailure that says which column and why."""
    env: dict[str, Any] = {}
    items = []
    for i, (col, name, conv, _typ) in enumerate(fields):
        get = f"row.get({col!r})" if col in optional else f"row[{col!r}]"   # optional: null until it exists
        if conv is None:
            items.append(f"{name!r}: {get}")
        else:
            env[f"_c{i}"] = conv
            items.append(f"{name!r}: None if (v{i} := {get}) is None else _c{i}(v{i})")
    src = "def payload(row):\n    return {" + ", ".join(items) + "}\n"
    exec(compile(src, "<cdc_bridge mapping payload>", "exec"), env)  # noqa: S102 - our own literals (repr'd)
    return env["payload"]


class TableTranslator:
    """The precompiled translation of one mapped table."""

    __slots__ = ("table", "aggregate", "entity", "id_cols", "agg_cols", "star", "exclude", "fields",
                 "optional", "filter", "ctype", "drop_unchanged", "_fast_payload")

    def __init__(self, agg: AggregateMapping, tm: TableMapping, drop_unchanged: bool = True) -> None:
        self.table = tm.table
        self.aggregate = agg.aggregate
        is_child = isinstance(tm, ChildMapping)
        self.entity = tm.name if is_child else "root"
        self.id_cols = tuple(tm.id)
        self.agg_cols = tuple(tm.parent_key) if is_child else self.id_cols
        plan = tm.field_plan()
        self.star = plan is None
        self.exclude = frozenset(tm.exclude)
        self.fields = tuple((col, name, COERCERS[typ], typ) for col, name, typ in (plan or ()))
        tests = [(col, test) for col, cond in tm.where.items() for test in _condition_tests(cond)]
        self.filter = tuple(tests) or None
        self.ctype = {op: agg.command_type(tm, op) for op in ("insert", "update", "delete", "snapshot")}
        self.drop_unchanged = drop_unchanged
        self.optional = tm.optional_columns()
        self._fast_payload = None if self.star else _compile_payload(self.fields, self.optional)

    # -- pieces, each raising _RowFailure

    def captured(self, row: dict[str, Any]) -> bool:
        for col, test in self.filter:  # type: ignore[union-attr]
            try:
                v = row[col]
            except KeyError:
                raise _RowFailure("missing_column", f"{self.table}: where column {col} is not in the row image "
                                  "(check binlog_row_image=FULL and the mapping)") from None
            if not test(v):
                return False
        return True

    def _key(self, row: dict[str, Any], cols: tuple[str, ...], what: str) -> str:
        if len(cols) == 1:
            v = row.get(cols[0])
            if type(v) is int:  # the common case: one integer column
                return str(v)
            if type(v) is str:
                return v
        parts = []
        for col in cols:
            v = row.get(col)
            if v is None:
                state = "NULL" if col in row else "absent from the row image"
                raise _RowFailure("null_key", f"{self.table}: {what} column {col} is {state}; "
                                  f"the row cannot be routed to an {self.aggregate}")
            parts.append(_key_part(v))
        return parts[0] if len(parts) == 1 else ":".join(parts)

    def keys(self, row: dict[str, Any]) -> tuple[str, str]:
        """(aggregate_id, entity_id) of a row image."""
        agg_id = self._key(row, self.agg_cols, "id" if self.entity == "root" else "parent_key")
        ent_id = agg_id if self.agg_cols is self.id_cols else self._key(row, self.id_cols, "id")
        return agg_id, ent_id

    def payload(self, row: dict[str, Any], agg_id: str | None = None) -> dict[str, Any]:
        if self.star:
            if self.exclude:
                return {k: v for k, v in row.items() if k not in self.exclude}
            return dict(row)
        try:
            return self._fast_payload(row)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - a missing column or a failed coercion: the loop below says which
            pass
        out: dict[str, Any] = {}
        for col, name, conv, typ in self.fields:
            try:
                v = row[col] if col not in self.optional else row.get(col)
            except KeyError:
                raise _RowFailure("missing_column", f"{self.table}: mapped column {col} is not in the row image "
                                  "(dropped or renamed? run `cdc-bridge check` against the database)",
                                  agg_id) from None
            if conv is not None and v is not None:
                try:
                    v = conv(v)
                except Exception as e:  # noqa: BLE001 - any failure of a coercer is a coercion failure
                    raise _RowFailure("coercion_failed",
                                      f"{self.table} column {col}: value {v!r} ({type(v).__name__}) cannot be "
                                      f"coerced to {typ} (field {name}): {e}", agg_id) from None
            out[name] = v
        return out

    # -- the row change

    def translate(self, ch: RowChange, index: int, ctx: tuple, out: list[Command]) -> None:
        op = ch.op
        if op == "update":
            before, after = ch.before, ch.after
            if before is None or after is None:
                raise _RowFailure("bad_row", f"{self.table}: update without a {'before' if before is None else 'after'} image")
            if self.filter is not None:
                b_in = self.captured(before)
                a_in = self.captured(after)
                if not a_in:
                    if b_in:   # the row left the capture (a soft delete): it still exists
                        self._emit("delete", before, index, ctx, out, soft=True)
                    return
                if not b_in:
                    self._emit("insert", after, index, ctx, out)
                    return
            b_agg, b_ent = self.keys(before)
            a_agg, a_ent = self.keys(after)
            if b_agg != a_agg or b_ent != a_ent:
                # moved to another parent / id changed: leave the old, enter the new (all or nothing)
                first = self._command("delete", before, index, ctx, b_agg, b_ent)
                second = self._command("insert", after, index, ctx, a_agg, a_ent)
                out.append(first)
                out.append(second)
                return
            new = self.payload(after, a_agg)
            old = self.payload(before, a_agg)
            if self.drop_unchanged and new == old:
                return
            out.append(self._build("update", a_agg, a_ent, new, old, index, ctx))
        elif op == "delete":
            row = ch.before
            if row is None:
                raise _RowFailure("bad_row", f"{self.table}: delete without a before image")
            if self.filter is None or self.captured(row):
                self._emit("delete", row, index, ctx, out)
        else:  # insert, snapshot
            row = ch.after
            if row is None:
                raise _RowFailure("bad_row", f"{self.table}: {op} without an after image")
            if self.filter is None or self.captured(row):
                self._emit(op, row, index, ctx, out)

    def _emit(self, op: str, row: dict[str, Any], index: int, ctx: tuple, out: list[Command],
              soft: bool = False) -> None:
        agg_id, ent_id = self.keys(row)
        out.append(self._command(op, row, index, ctx, agg_id, ent_id, soft))

    def _command(self, op: str, row: dict[str, Any], index: int, ctx: tuple, agg_id: str, ent_id: str,
                 soft: bool = False) -> Command:
        payload = self.payload(row, agg_id)
        # delete: payload and before are the fields before the change (the same dict: Command is frozen)
        return self._build(op, agg_id, ent_id, payload, payload if op == "delete" else None, index, ctx, soft)

    def _build(self, op: str, agg_id: str, ent_id: str, payload: dict, before: dict | None,
               index: int, ctx: tuple, soft: bool = False) -> Command:
        position, txn_id, commit_ts, wire = ctx
        if wire:   # the wire form (command_to_wire's tuple): no Command object where nothing needs one
            return (self.ctype[op], self.aggregate, agg_id, self.entity, ent_id, op,  # type: ignore[return-value]
                    payload, before, self.table, index, soft)
        return _make_command(
            command_type=self.ctype[op], aggregate=self.aggregate, aggregate_id=agg_id, entity=self.entity,
            entity_id=ent_id, operation=op, payload=payload, before=before, table=self.table,
            position=position, txn_id=txn_id, commit_ts=commit_ts, index=index, soft=soft)


SIGNAL_AGGREGATE = "\x00signal"   # commands of the signal table's rows (ingest/resnapshot.py), never applied


class _SignalTranslator:
    """The signal table: each inserted row becomes one signal command carrying the row."""

    aggregate = SIGNAL_AGGREGATE

    def __init__(self, table: str) -> None:
        self.table = table

    def translate(self, ch: RowChange, index: int, ctx: tuple, out: list[Command]) -> None:
        if ch.op != "insert" or ch.after is None:
            return
        position, txn_id, commit_ts = ctx[:3]
        out.append(Command.model_construct(
            command_type="Signal", aggregate=SIGNAL_AGGREGATE, aggregate_id=str(ch.after.get("id")), entity="root",
            entity_id=str(ch.after.get("id")), operation="insert", payload=dict(ch.after), before=None,
            table=self.table, position=position, txn_id=txn_id, commit_ts=commit_ts, index=index, soft=False))


class Translator:
    """All mapped tables; translate() is what MappingSet.translate calls."""

    def __init__(self, aggregates: list[AggregateMapping], drop_unchanged_updates: bool = True,
                 signal_table: str | None = None) -> None:
        # a table may feed several aggregates (each mapping with its own `where`): every one of them
        # translates its rows, in the order the aggregates were loaded
        tables: dict[str, list[TableTranslator]] = {}
        for agg in aggregates:
            for tm in agg.tables():
                tables.setdefault(tm.table, []).append(TableTranslator(agg, tm, drop_unchanged_updates))
        from cdc_bridge.mapping.lookups import LookupTranslator, reference_tables

        for ref in reference_tables(aggregates).values():   # reference tables of lookups: lookup commands
            tables.setdefault(ref.table, []).append(LookupTranslator(ref))  # type: ignore[arg-type]
        self.tables: dict[str, tuple[Any, ...]] = {t: tuple(ts) for t, ts in tables.items()}
        if signal_table:
            self.tables[signal_table] = (_SignalTranslator(signal_table),)

    def translate(self, txn: SourceTransaction, wire: bool = False) -> tuple[list[Any], list[DeadLetter]]:
        """wire: the commands in their wire form (command_to_wire's tuples; the reader process sends them)."""
        commands: list[Any] = []
        dead: list[DeadLetter] = []
        tables = self.tables
        only = txn.snapshot_of   # a snapshot chunk: its aggregate's mappings only
        ctx: tuple | None = None
        for index, ch in enumerate(txn.changes):
            ts = tables.get(ch.table)
            if ts is None:
                continue
            if ctx is None:
                ctx = (txn.position, txn.txn_id, txn.commit_ts, wire)
            for t in ts:
                if only is not None and t.aggregate != only:
                    continue
                try:
                    if wire and type(t) is not TableTranslator:   # lookups, signals: Commands, converted
                        n = len(commands)
                        t.translate(ch, index, ctx, commands)
                        commands[n:] = [command_to_wire(c) for c in commands[n:]]
                    else:
                        t.translate(ch, index, ctx, commands)
                except _RowFailure as f:
                    row = ch.before if ch.op == "delete" else ch.after
                    dead.append(DeadLetter(
                        reason=f.reason, detail=f"{f.detail} ({ch.op}, row change #{index} of the transaction)",
                        table=ch.table, aggregate=t.aggregate, aggregate_id=f.aggregate_id,
                        position=txn.position, txn_id=txn.txn_id, record=row))
        return commands, dead
