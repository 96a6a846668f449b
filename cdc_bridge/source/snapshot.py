"""Initial snapshot: the mapped tables' rows, read in one consistent snapshot tied to a binlog position.

    reader = SnapshotReader(settings, mappings.aggregates, chunk_size=1000)
    position = reader.open()                     # snapshot + the binlog position it corresponds to
    progress = SnapshotProgress.from_estimate(mappings.aggregates, reader.estimate())
    for chunk in reader.chunks(after=saved_cursor):
        ...                                      # chunk.changes: RowChange(op="snapshot"), roots then children
        saved_cursor = chunk.cursor              # JSON: pass it back as `after` to continue after this chunk
        progress.update(chunk)
    reader.close()
    BinlogSource(settings, tables, start=position)   # exactly the commits the snapshot does not contain

What the snapshot guarantees, and how:

* One consistent read view, and the binlog position of exactly that view. MariaDB: REPEATABLE
  READ + START TRANSACTION WITH CONSISTENT SNAPSHOT, then the session status variables
  binlog_snapshot_file / binlog_snapshot_position (maintained by the server to match the
  snapshot; no lock at all) and BINLOG_GTID_POS(file, pos) for the GTID position BinlogSource
  resumes from. MySQL: FLUSH TABLES WITH READ LOCK around START TRANSACTION WITH CONSISTENT
  SNAPSHOT and the binlog status (what mysqldump --single-transaction --source-data does; the
  lock lasts a few milliseconds). When FTWRL is refused (no RELOAD, e.g. managed services) the
  mapped tables are locked with LOCK TABLES ... READ from a second session instead, which also
  waits for in-flight writers of those tables. (LOCK INSTANCE FOR BACKUP alone would not do:
  it does not stop DML, so a commit could land between the read view and the position.)
* Values identical to the binlog decoder's (values.py) for the same row: the rows are read
  in the text protocol without PyMySQL's conversions (raw bytes, text in the column's own
  charset: character_set_results=NULL), and each column is normalized by a function chosen
  from information_schema, formatting with values.py's helpers. TIMESTAMPs are read in a
  session with time_zone '+00:00' (UTC, like the binlog), FLOATs as CAST(col AS DOUBLE)
  (the text protocol prints only 6 digits), and MariaDB's UUID/INET4/INET6 become the bytes
  the binlog carries.
* Bounded memory: `chunk_size` roots per chunk plus the children of those roots. Roots are
  read in order of the mapping's `id` columns with keyset pagination; MariaDB 10.11 does not
  use an index range for a row comparison `(a, b) > (x, y)` (EXPLAIN shows a full index
  scan), so composite keys are written out as `a > x OR (a = x AND b > y)`.
* Children whose parent row does not exist ("orphans", e.g. lines written before their
  order) come in a last pass per child table, so they end up held exactly as in streaming.
  The pass is an anti-join (LEFT JOIN root ... WHERE root.id IS NULL; NOT EXISTS is
  materialized by MariaDB for every page) paginated on the child's id.
* The mapping's `where` is not applied here: the translator treats op "snapshot" like an
  insert that passes or fails the filter, exactly as for streamed rows.
"""

from __future__ import annotations

import base64
import calendar
import collections
import contextlib
import datetime as _dt
import ipaddress
import json
import re
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import pymysql
import structlog
from pymysqlreplication.constants.CHARSET import Charset

from cdc_bridge.mapping.schema import AggregateMapping, ChildMapping, TableMapping
from cdc_bridge.source.errors import BinlogDisabledError, SourceError
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.preflight import Flavor, connect, current_position, detect_flavor
from cdc_bridge.source.settings import SourceSettings
from cdc_bridge.source.transaction import RowChange, TableShape
from cdc_bridge.source.values import (ZERO_DATE, b64, float32_to_python, format_date, format_datetime,
                                      format_decimal, format_time, format_timedelta, format_timestamp_utc,
                                      is_tinyint1, json_checked_columns, python_codec)

log = structlog.get_logger(__name__)

__all__ = ["SnapshotChunk", "SnapshotColumn", "SnapshotError", "SnapshotProgress", "SnapshotReader",
           "children_sql", "keyset_condition", "normalizer_for", "orphans_sql", "page_sql"]

# server error codes
ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_TABLEACCESS_DENIED = 1142
ER_SPECIFIC_ACCESS_DENIED = 1227
ER_LOCK_WAIT_TIMEOUT = 1205
ER_TABLE_DEF_CHANGED = 1412
_DENIED = {ER_DBACCESS_DENIED, ER_ACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED}


class SnapshotError(SourceError):
    """The snapshot cannot be taken or continued; the message says why and what to do (exit code 80)."""


# ---------------------------------------------------------------- columns and value normalization

_INT_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})
_TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
_LOB_TEXT_TYPES = frozenset({"tinytext", "text", "mediumtext", "longtext"})  # binlog type BLOB
_BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
_GEOMETRY_TYPES = frozenset({"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
                             "multipolygon", "geometrycollection", "geomcollection"})
_ZERO_CAPABLE = frozenset({"date", "datetime", "timestamp", "year"})
# key columns we can paginate on (ORDER BY and `>` must agree, and the value must survive the
# round trip normalized value -> SQL parameter)
_KEY_TYPES = (_INT_TYPES | {"decimal", "double", "char", "varchar", "binary", "varbinary", "date", "datetime",
                            "timestamp", "time", "year", "bit", "uuid", "inet4", "inet6"})

_MEMBER = re.compile(r"'((?:[^'\\]|''|\\.)*)'", re.DOTALL)
_ESCAPE = re.compile(r"''|\\(.)", re.DOTALL)
_ESCAPED = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "b": "\b"}


def enum_members(column_type: str) -> tuple[str, ...]:
    """information_schema COLUMN_TYPE "set('a','it''s','back\\\\slash')" -> ('a', "it's", 'back\\slash'): the
    server writes the members as SQL string literals (a quote doubled, a backslash escaped)."""
    inner = column_type[column_type.find("(") + 1:column_type.rfind(")")]

    def unescape(m: re.Match) -> str:
        return "'" if m.group(1) is None else _ESCAPED.get(m.group(1), m.group(1))

    return tuple(_ESCAPE.sub(unescape, m.group(1)) for m in _MEMBER.finditer(inner))


def mariadb_json_columns(conn: Any, tables: Iterable[str]) -> dict[str, set[str]]:
    """MariaDB's JSON columns of `tables` (schema.table), as schema.table -> column names. MariaDB's JSON is a
    LONGTEXT with CHECK (json_valid(col)), and the source decodes such a column as the parsed document
    (docs/types.md); information_schema only says longtext. Empty on MySQL, whose JSON is a type of its own.
    The event schemas and the change stream's schemas both ask this (conn: an open pymysql connection)."""
    import pymysql

    wanted = set(tables)
    schemas = sorted({t.split(".", 1)[0] for t in wanted})
    if not schemas:
        return {}
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute("SELECT VERSION()")
        if "mariadb" not in str(cur.fetchone()[0]).lower():
            return {}
        cur.execute("SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                    f"WHERE CONSTRAINT_SCHEMA IN ({', '.join(['%s'] * len(schemas))})", schemas)
        clauses: dict[str, list[str]] = {}
        for s, t, clause in cur.fetchall():
            if f"{s}.{t}" in wanted:
                clauses.setdefault(f"{s}.{t}", []).append(str(clause))
    return {t: cols for t, c in clauses.items() if (cols := json_checked_columns(c))}


def is_json_text(data_type: str, name: str, json_columns: Iterable[str]) -> bool:
    """A text column that holds MariaDB's JSON (see mariadb_json_columns): the snapshot and the contracts ask this."""
    return data_type in _LOB_TEXT_TYPES and name in json_columns


def _charset_codec(charset: str | None) -> str | None:
    """The Python codec the binlog decoder uses for a column of this charset (same chain:
    pymysqlreplication's Charset.encoding, then values.python_codec); None = binary."""
    if charset is None or charset.lower() == "binary":
        return None
    return python_codec(Charset(0, charset.lower(), "").encoding)


@dataclass(frozen=True, slots=True)
class SnapshotColumn:
    """One column as information_schema describes it: what reading and normalizing it needs.

    data_type:    information_schema DATA_TYPE, lower case ("int", "decimal", "varchar", "uuid" ...)
    column_type:  COLUMN_TYPE ("tinyint(1)", "enum('a','b')", "binary(16)" ...)
    scale:        DECIMAL scale; fsp: DATETIME/TIMESTAMP/TIME fraction digits
    octet_length: bytes of a BINARY(n) column (n)
    charset:      CHARACTER_SET_NAME of a character column (None: not a character column)
    is_json_text: MariaDB JSON (a LONGTEXT with CHECK (json_valid(col)))
    """

    name: str
    data_type: str
    column_type: str = ""
    nullable: bool = True
    precision: int = 0
    scale: int = 0
    fsp: int = 0
    octet_length: int = 0
    charset: str | None = None
    is_json_text: bool = False

    @classmethod
    def from_information_schema(cls, row: dict[str, Any], json_columns: set[str] = frozenset()) -> "SnapshotColumn":
        """From an information_schema.COLUMNS row (keys in upper case, as the server names them)."""
        name = str(row["COLUMN_NAME"])
        data_type = str(row["DATA_TYPE"]).lower()
        return cls(
            name=name,
            data_type=data_type,
            column_type=str(row.get("COLUMN_TYPE") or ""),
            nullable=str(row.get("IS_NULLABLE") or "YES").upper() == "YES",
            precision=int(row.get("NUMERIC_PRECISION") or 0),
            scale=int(row.get("NUMERIC_SCALE") or 0),
            fsp=int(row.get("DATETIME_PRECISION") or 0),
            octet_length=int(row.get("CHARACTER_OCTET_LENGTH") or 0),
            charset=row.get("CHARACTER_SET_NAME"),
            is_json_text=is_json_text(data_type, name, json_columns),
        )

    @property
    def is_bool(self) -> bool:
        return self.data_type == "tinyint" and is_tinyint1(self.column_type)

    @property
    def zero_capable(self) -> bool:
        return self.data_type in _ZERO_CAPABLE

    @property
    def codec(self) -> str | None:
        return _charset_codec(self.charset)

    def select_expr(self, alias: str = "") -> str:
        """The SELECT expression reading this column (FLOAT: widened exactly to DOUBLE)."""
        col = qualified(self.name, alias)
        if self.data_type == "float":
            return f"CAST({col} AS DOUBLE)"
        return col

    # -- keys: normalized value -> SQL parameter (keyset pagination, IN lists)

    @property
    def placeholder(self) -> str:
        """The SQL placeholder a key value of this column is compared with."""
        if self.data_type == "decimal":
            return f"CAST(%s AS DECIMAL({max(self.precision, 1)},{self.scale}))"
        return "%s"

    def to_param(self, value: Any) -> Any:
        """A normalized value of this column (as in RowChange.after) -> a query parameter equal to it."""
        t = self.data_type
        if value is None:
            raise SnapshotError(f"column {self.name!r}: a NULL or zero-date key value cannot be a resume point")
        if t not in _KEY_TYPES:
            raise SnapshotError(f"column {self.name!r} ({self.column_type or t}) cannot be used as a snapshot key: "
                                f"map an integer, decimal, string, binary or temporal column as id")
        if t in _INT_TYPES or t in ("year", "bit"):
            return int(value)
        if t in ("binary", "varbinary"):
            return base64.b64decode(value)
        if t == "datetime":
            return str(value).replace("T", " ")
        if t == "timestamp":
            return str(value).rstrip("Z").replace("T", " ")  # the session's time_zone is UTC
        if t == "uuid":
            return str(uuidlib.UUID(bytes=base64.b64decode(value)))
        if t == "inet6":
            return str(ipaddress.IPv6Address(base64.b64decode(value)))
        if t == "inet4":
            return str(ipaddress.IPv4Address(base64.b64decode(value)))
        return value  # str (text, decimal as CAST(%s ...), date, time), float (double)


def qualified(name: str, alias: str = "") -> str:
    return f"{alias}.{quote_ident(name)}" if alias else quote_ident(name)


Normalizer = Callable[[Any], Any]


def _ascii(v: Any) -> str:
    return v.decode("ascii") if v.__class__ is bytes else str(v)


def _micro(frac: str) -> int:
    return int(frac.ljust(6, "0")[:6]) if frac else 0


def _text_normalizer(codec: str) -> Normalizer:
    def norm_text(v: Any) -> Any:
        if v.__class__ is bytes:
            try:
                return v.decode(codec)
            except UnicodeDecodeError:
                return v.decode(codec, "replace")
        return v if isinstance(v, str) else str(v)
    return norm_text


def _json_text_normalizer(codec: str) -> Normalizer:
    text = _text_normalizer(codec)

    def norm_json(v: Any) -> Any:
        if isinstance(v, (dict, list)):
            return v
        s = text(v)
        try:
            return json.loads(s)
        except ValueError:
            return s  # not JSON after all (the binlog decoder keeps the text too)
    return norm_json


def _binary_normalizer(pad_to: int = 0) -> Normalizer:
    def norm_binary(v: Any) -> Any:
        if isinstance(v, str):
            v = v.encode("utf-8", "surrogateescape")
        data = bytes(v)
        return b64(data.ljust(pad_to, b"\0") if pad_to else data)
    return norm_binary


def _bool(v: Any) -> Any:
    return int(v) != 0


def _float(v: Any) -> Any:
    return float32_to_python(float(v))


def _bit(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return int.from_bytes(v, "big")
    return int(v)


def _year(v: Any) -> Any:
    return int(v)   # YEAR 0000 -> 0, as the binlog source: distinguishable from NULL


def _decimal_normalizer(scale: int) -> Normalizer:
    def norm_decimal(v: Any) -> Any:
        if v.__class__ is bytes:
            s = v.decode("ascii")
            dot = s.find(".")
            digits = len(s) - dot - 1 if dot >= 0 else 0
            # the server prints DECIMAL with its scale already; "-0.00" cannot be stored, but check
            if digits == scale and (s[0] != "-" or s.strip("-0.")):
                return s
            return format_decimal(s, scale)
        return format_decimal(v, scale)
    return norm_decimal


def _date(v: Any) -> Any:
    if isinstance(v, _dt.date):
        return format_date(v.year, v.month, v.day)
    s = _ascii(v)
    year, month, day = int(s[0:4]), int(s[5:7]), int(s[8:10])
    if not (year and month and day):
        return ZERO_DATE
    return format_date(year, month, day)


def _parse_datetime(v: Any) -> tuple[int, int, int, int, int, int, int] | None:
    """'YYYY-MM-DD HH:MM:SS[.fff]' (or a datetime) -> parts; None for a zero / partly zero date."""
    if isinstance(v, _dt.datetime):
        return v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond
    if isinstance(v, _dt.date):
        return v.year, v.month, v.day, 0, 0, 0, 0
    s = _ascii(v)
    year, month, day = int(s[0:4]), int(s[5:7]), int(s[8:10])
    if not (year and month and day):
        return None
    return year, month, day, int(s[11:13]), int(s[14:16]), int(s[17:19]), _micro(s[20:26])


def _datetime_normalizer(fsp: int) -> Normalizer:
    def norm_datetime(v: Any) -> Any:
        p = _parse_datetime(v)
        if p is None:
            return ZERO_DATE
        return format_datetime(p[0], p[1], p[2], p[3], p[4], p[5], p[6], fsp)
    return norm_datetime


def _timestamp_normalizer(fsp: int) -> Normalizer:
    """TIMESTAMP read in a session with time_zone '+00:00': the text is UTC."""
    timegm = calendar.timegm

    def norm_timestamp(v: Any) -> Any:
        p = _parse_datetime(v)
        if p is None:
            return ZERO_DATE  # '0000-00-00 00:00:00'
        return format_timestamp_utc(timegm(p[:6]), p[6], fsp)
    return norm_timestamp


def _time_normalizer(fsp: int) -> Normalizer:
    def norm_time(v: Any) -> Any:
        if isinstance(v, _dt.timedelta):
            return format_timedelta(v, fsp)
        if isinstance(v, _dt.time):
            return format_time(False, v.hour, v.minute, v.second, v.microsecond, fsp)
        s = _ascii(v)
        negative = s.startswith("-")
        if negative:
            s = s[1:]
        hms, _, frac = s.partition(".")
        hours, minutes, seconds = hms.split(":")
        return format_time(negative, int(hours), int(minutes), int(seconds), _micro(frac), fsp)
    return norm_time


def _enum_normalizer(codec: str | None) -> Normalizer:
    return _text_normalizer(codec or "utf-8")


def _set_normalizer(codec: str | None, members: tuple[str, ...]) -> Normalizer:
    text = _text_normalizer(codec or "utf-8")

    def norm_set(v: Any) -> Any:
        if isinstance(v, (set, frozenset)):
            chosen = {text(m) for m in v}
            return [m for m in members if m in chosen] if members else sorted(chosen)
        s = text(v)
        return s.split(",") if s else []  # the server lists members in definition order
    return norm_set


def _uuid(v: Any) -> Any:
    if isinstance(v, uuidlib.UUID):
        return b64(v.bytes)
    return b64(bytes.fromhex(_ascii(v).replace("-", "")))


def _inet_normalizer(cls: type) -> Normalizer:
    def norm_inet(v: Any) -> Any:
        return b64(cls(_ascii(v)).packed)
    return norm_inet


def normalizer_for(col: SnapshotColumn) -> Normalizer:
    """The function turning one non-NULL value of `col`, as read by the snapshot, into its
    RowChange value (docs/types.md), or ZERO_DATE for a zero / partly zero date.

    Accepts the raw text-protocol bytes the snapshot reads (text in the column's own
    charset, binary as is) and also PyMySQL's converted values (int, Decimal, datetime, date,
    timedelta, str, bytes, set), so both paths share one definition per format.
    """
    t = col.data_type
    if t == "tinyint" and col.is_bool:
        return _bool
    if t in _INT_TYPES:
        return int  # int(b"-128") parses the text protocol's bytes directly
    if t == "decimal":
        return _decimal_normalizer(col.scale)
    if t == "float":
        return _float
    if t in ("double", "real"):
        return float  # the server prints DOUBLE with every digit needed to read it back
    if t == "date":
        return _date
    if t == "datetime":
        return _datetime_normalizer(col.fsp)
    if t == "timestamp":
        return _timestamp_normalizer(col.fsp)
    if t == "time":
        return _time_normalizer(col.fsp)
    if t == "year":
        return _year
    if t in _TEXT_TYPES:
        codec = col.codec
        if codec is None:  # CHAR(n) CHARACTER SET binary reports as binary; be safe anyway
            return _binary_normalizer(col.octet_length if t == "char" else 0)
        return _json_text_normalizer(codec) if col.is_json_text else _text_normalizer(codec)
    if t == "json":  # MySQL's native JSON: the text form, utf8mb4
        return _json_text_normalizer("utf-8")
    if t == "binary":
        return _binary_normalizer(col.octet_length)
    if t in _BINARY_TYPES or t in _GEOMETRY_TYPES:
        return _binary_normalizer()
    if t == "enum":
        return _enum_normalizer(col.codec)
    if t == "set":
        return _set_normalizer(col.codec, enum_members(col.column_type))
    if t == "bit":
        return _bit
    if t == "uuid":
        return _uuid
    if t == "inet6":
        return _inet_normalizer(ipaddress.IPv6Address)
    if t == "inet4":
        return _inet_normalizer(ipaddress.IPv4Address)
    raise SnapshotError(f"column {col.name!r} has type {col.column_type or t}, which the snapshot cannot read")


# ---------------------------------------------------------------- SQL (pure: unit-tested)


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def table_ref(table: str) -> str:
    """'shop.orders' -> '`shop`.`orders`'."""
    schema, _, name = table.partition(".")
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def keyset_condition(key: Sequence[str], placeholders: Sequence[str] | None = None,
                     alias: str = "") -> tuple[str, list[int]]:
    """The condition "row key > given key" in ORDER BY order, and which key value each %s takes.

        ["id"]        -> ("`id` > %s", [0])
        ["a", "b"]    -> ("(`a` > %s OR (`a` = %s AND `b` > %s))", [0, 0, 1])

    Written out rather than as `(a, b) > (%s, %s)`: MariaDB does not use an index range
    for row comparisons, so every page would scan the index from its start.
    """
    ph = list(placeholders) if placeholders is not None else ["%s"] * len(key)
    cols = [qualified(k, alias) for k in key]
    if len(cols) == 1:
        return f"{cols[0]} > {ph[0]}", [0]
    terms: list[str] = []
    index: list[int] = []
    for i in range(len(cols)):
        parts = [f"{cols[j]} = {ph[j]}" for j in range(i)] + [f"{cols[i]} > {ph[i]}"]
        index.extend(range(i + 1))
        terms.append(parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(terms) + ")", index


def page_sql(table: str, select: Sequence[str], key: Sequence[str], *, after: bool, limit: int,
             not_null: Sequence[str] = (), placeholders: Sequence[str] | None = None) -> tuple[str, list[int]]:
    """One keyset page of `table` in `key` order: (sql, key value index of each %s)."""
    where: list[str] = [f"{quote_ident(c)} IS NOT NULL" for c in not_null]
    index: list[int] = []
    if after:
        cond, index = keyset_condition(key, placeholders)
        where.insert(0, cond)
    sql = f"SELECT {', '.join(select)} FROM {table_ref(table)}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {', '.join(quote_ident(k) for k in key)} LIMIT {int(limit)}"
    return sql, index


def children_sql(table: str, select: Sequence[str], parent_key: Sequence[str], parents: int,
                 order: Sequence[str], placeholders: Sequence[str] | None = None) -> str:
    """The rows of a child table whose parent_key is one of `parents` keys, in `order`.

        single:    ... WHERE `order_id` IN (%s, %s) ORDER BY `id`
        composite: ... WHERE (`tenant_id`, `customer_no`) IN ((%s, %s), (%s, %s)) ORDER BY `address_id`
    """
    if parents < 1:
        raise ValueError("children_sql needs at least one parent")
    ph = list(placeholders) if placeholders is not None else ["%s"] * len(parent_key)
    if len(parent_key) == 1:
        lhs, one = quote_ident(parent_key[0]), ph[0]
    else:
        lhs = "(" + ", ".join(quote_ident(c) for c in parent_key) + ")"
        one = "(" + ", ".join(ph) + ")"
    return (f"SELECT {', '.join(select)} FROM {table_ref(table)} WHERE {lhs} IN ({', '.join([one] * parents)}) "
            f"ORDER BY {', '.join(quote_ident(c) for c in order)}")


def orphans_sql(child_table: str, root_table: str, select: Sequence[str], parent_key: Sequence[str],
                root_id: Sequence[str], key: Sequence[str], *, after: bool, limit: int,
                not_null: Sequence[str] = (), placeholders: Sequence[str] | None = None) -> tuple[str, list[int]]:
    """One keyset page of the child rows without a parent row (`select` qualified with alias c).

    An anti-join: LEFT JOIN ... IS NULL (eq_ref per row, "Not exists") rather than NOT EXISTS,
    which MariaDB materializes over the whole root table for every page.
    """
    on = " AND ".join(f"r.{quote_ident(r)} = c.{quote_ident(p)}" for r, p in zip(root_id, parent_key))
    where = [f"r.{quote_ident(root_id[0])} IS NULL"] + [f"c.{quote_ident(k)} IS NOT NULL" for k in not_null]
    index: list[int] = []
    if after:
        cond, index = keyset_condition(key, placeholders, alias="c")
        where.append(cond)
    sql = (f"SELECT {', '.join(select)} FROM {table_ref(child_table)} AS c "
           f"LEFT JOIN {table_ref(root_table)} AS r ON {on} WHERE {' AND '.join(where)} "
           f"ORDER BY {', '.join('c.' + quote_ident(k) for k in key)} LIMIT {int(limit)}")
    return sql, index


# ---------------------------------------------------------------- per-table reading plans


@dataclass
class _TablePlan:
    """How one mapped table is read: columns selected, normalizers, key columns."""

    table: str                          # as the mapping names it: "schema.table"
    mapping: TableMapping
    columns: list[SnapshotColumn]       # selected, in table order
    keep: list[bool]                    # goes into RowChange.after (False: only read for the order key)
    norms: list[Normalizer]
    order: list[str]                    # keyset order: the mapping's id (+ primary key when id is not unique)
    shape: TableShape | None = None     # a table of the change stream (read with every column)
    order_idx: list[int] = field(default_factory=list)
    id_idx: list[int] = field(default_factory=list)
    by_name: dict[str, SnapshotColumn] = field(default_factory=dict)
    steps: tuple = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        self.by_name = {c.name: c for c in self.columns}
        self.order_idx = [names.index(k) for k in self.order]
        self.id_idx = [names.index(k) for k in self.mapping.id]
        self.steps = tuple((i, c.name, self.norms[i], c.zero_capable)
                           for i, c in enumerate(self.columns) if self.keep[i])

    def select(self, alias: str = "") -> list[str]:
        return [c.select_expr(alias) for c in self.columns]

    def key_columns(self, names: Sequence[str]) -> list[SnapshotColumn]:
        return [self.by_name[n] for n in names]

    def nullable(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if self.by_name[n].nullable]

    def changes(self, raw_rows: Sequence[tuple]) -> list[RowChange]:
        """Raw result rows -> RowChange(op="snapshot"), after in table order, zero dates flagged."""
        out: list[RowChange] = []
        append = out.append
        table = self.table
        steps = self.steps
        zero = ZERO_DATE
        for raw in raw_rows:
            after: dict[str, Any] = {}
            zeros = None
            for i, name, norm, zero_capable in steps:
                v = raw[i]
                if v is not None:
                    v = norm(v)
                    if zero_capable and v is zero:
                        v = None
                        if zeros is None:
                            zeros = [name]
                        else:
                            zeros.append(name)
                after[name] = v
            append(RowChange(table, "snapshot", None, after, zeros))
        return out

    def key_of(self, raw: tuple, idx: list[int]) -> list[Any]:
        """Normalized values of the columns at `idx` of one raw row (JSON-able)."""
        out = []
        for i in idx:
            v = raw[i]
            if v is not None:
                v = self.norms[i](v)
                if v is ZERO_DATE:
                    v = None
            out.append(v)
        return out


@dataclass
class _AggregatePlan:
    mapping: AggregateMapping
    root: _TablePlan
    children: list[tuple[ChildMapping, _TablePlan]]

    @property
    def name(self) -> str:
        return self.mapping.aggregate


@dataclass(slots=True)
class SnapshotChunk:
    """A bounded piece of the snapshot.

    aggregate: the aggregate type whose tables it holds
    changes:   RowChange(op="snapshot", before=None) — the chunk's roots in id order, then
               their children (per child mapping, in child id order); or, in the orphan pass,
               child rows whose parent row does not exist
    cursor:    where to continue after this chunk (JSON-able); pass it as chunks(after=...).
               It names the *next* phase once this one is exhausted: the last root chunk's
               cursor points at the orphan pass, the last orphan chunk's at the next aggregate
               ({"done": True} at the end), so do not infer this chunk's phase from it.
    orphans:   True for chunks of the orphan pass (child rows whose parent row does not exist)
    rows:      len(changes)
    """

    aggregate: str
    changes: list[RowChange]
    cursor: dict[str, Any]
    rows: int
    orphans: bool = False


# ---------------------------------------------------------------- the reader


class SnapshotReader:
    """Reads the mapped tables in one consistent snapshot, aggregate by aggregate.

    settings:   the source server (SourceSettings); the user needs SELECT on the mapped tables
                (MySQL also RELOAD for FLUSH TABLES WITH READ LOCK, else LOCK TABLES)
    aggregates: the mappings, read in this order (root rows, their children, then orphans)
    chunk_size: roots per chunk (orphan chunks: child rows per chunk)
    query_timeout: seconds a single query may take (the orphan pass scans a whole child table)
    lock_wait_timeout: MySQL: seconds FTWRL / LOCK TABLES may wait for running statements
    connect:    factory of the PyMySQL connection (tests); default preflight.connect
    describe:   tables of the change stream: read with every column, described by table_shape()
    """

    def __init__(self, settings: SourceSettings, aggregates: list[AggregateMapping], chunk_size: int = 1000, *,
                 query_timeout: float = 3600.0, lock_wait_timeout: float = 10.0,
                 connect: Callable[[], Any] | None = None, describe: Sequence[str] = ()) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        names = [a.aggregate for a in aggregates]
        if len(set(names)) != len(names):
            raise ValueError(f"aggregate names must be unique, got {names}")
        self.settings = settings
        self.aggregates = list(aggregates)
        self.chunk_size = chunk_size
        self.describe = frozenset(describe)
        self.query_timeout = query_timeout
        self.lock_wait_timeout = lock_wait_timeout
        self._connect = connect or (lambda: _connect_snapshot(settings, query_timeout))
        self._conn: Any = None
        self._plans: list[_AggregatePlan] = []
        self.position: SourcePosition | None = None
        self.flavor: Flavor | None = None
        self.lock_strategy: str | None = None  # MySQL: "ftwrl" or "lock_tables"; MariaDB: None (no lock)
        self.rows_read = 0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "SnapshotReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> SourcePosition:
        """Start the snapshot; return the binlog position it corresponds to (resume BinlogSource there)."""
        if self._conn is not None:
            raise RuntimeError("SnapshotReader.open() was already called")
        conn = self._connect()
        try:
            version = str(_query(conn, "SELECT VERSION()")[0][0])
            flavor: Flavor = detect_flavor(version) if self.settings.flavor == "auto" else self.settings.flavor
            _execute(conn, "SET SESSION time_zone = '+00:00'")
            # rows arrive as the bytes stored: text in its column's charset, decoded like the binlog does
            _execute(conn, "SET SESSION character_set_results = NULL")
            _execute(conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if flavor == "mariadb":
                position = self._open_mariadb(conn)
            else:
                position = self._open_mysql(conn)
            self._conn = conn
            self.flavor = flavor
            self.position = position
            self._plans = [self._aggregate_plan(conn, flavor, agg) for agg in self.aggregates]
        except BaseException:
            self._conn = None
            _close_quietly(conn)
            raise
        log.info("snapshot opened", flavor=flavor, version=version, position=str(position),
                 lock=self.lock_strategy, aggregates=[a.aggregate for a in self.aggregates])
        return position

    def _open_mariadb(self, conn: Any) -> SourcePosition:
        # The server keeps binlog_snapshot_file/position consistent with the read view of
        # START TRANSACTION WITH CONSISTENT SNAPSHOT: no lock needed.
        _execute(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        status = {str(r[0]).lower(): r[1] for r in _query(conn, "SHOW STATUS LIKE 'binlog_snapshot_%'")}
        file = str(status.get("binlog_snapshot_file") or "")
        if not file:
            raise BinlogDisabledError(self.settings.describe())
        pos = int(status.get("binlog_snapshot_position") or 0)
        row = _query(conn, "SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        gtid = row[0][0] if row else None
        if gtid is None:
            raise SnapshotError(f"BINLOG_GTID_POS({file!r}, {pos}) returned NULL: the server cannot map the "
                                f"snapshot's binlog position to a GTID position; retry the snapshot")
        return SourcePosition(gtid=_text(gtid), binlog_file=file, binlog_pos=pos)

    def _open_mysql(self, conn: Any) -> SourcePosition:
        # FTWRL waits for running statements; a bounded wait keeps a long query from stalling all writes
        timeout = max(1, int(self.lock_wait_timeout))
        _execute(conn, f"SET SESSION lock_wait_timeout = {timeout}")
        helper = None
        try:
            _execute(conn, "FLUSH TABLES WITH READ LOCK")
            self.lock_strategy = "ftwrl"
        except pymysql.err.MySQLError as e:
            if _code(e) == ER_LOCK_WAIT_TIMEOUT:
                raise SnapshotError(f"FLUSH TABLES WITH READ LOCK waited more than {timeout}s for running "
                                    f"statements; retry when no long query runs (or raise lock_wait_timeout)") from e
            if _code(e) not in _DENIED:
                raise
            log.warning("FLUSH TABLES WITH READ LOCK refused; locking the mapped tables instead",
                        reason=_reason(e))
            helper = self._lock_tables(timeout)
            self.lock_strategy = "lock_tables"
        try:
            _execute(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            position = current_position(conn, "mysql")
        finally:
            if helper is None:
                _execute(conn, "UNLOCK TABLES")
            else:
                try:
                    _execute(helper, "UNLOCK TABLES")
                finally:
                    _close_quietly(helper)
        return position

    def _lock_tables(self, timeout: int) -> Any:
        """A second session holding LOCK TABLES ... READ on every mapped table.

        It waits for the writers of those tables to commit and keeps new ones out while the
        snapshot session starts its read view and reads the binlog position. (The snapshot
        session cannot hold the locks itself: START TRANSACTION releases LOCK TABLES.)"""
        tables = [tm.table for agg in self.aggregates for tm in agg.tables()]
        helper = self._connect()
        try:
            _execute(helper, f"SET SESSION lock_wait_timeout = {timeout}")
            _execute(helper, "LOCK TABLES " + ", ".join(f"{table_ref(t)} READ" for t in tables))
        except pymysql.err.MySQLError as e:
            _close_quietly(helper)
            if _code(e) in _DENIED:
                raise SnapshotError(
                    f"a consistent snapshot on MySQL needs FLUSH TABLES WITH READ LOCK (privilege RELOAD) or "
                    f"LOCK TABLES on the mapped tables (privilege LOCK TABLES); user {self.settings.user} has "
                    f"neither ({_reason(e)}). As an admin run e.g. GRANT RELOAD ON *.* TO "
                    f"'{self.settings.user}'@'%';") from e
            if _code(e) == ER_LOCK_WAIT_TIMEOUT:
                raise SnapshotError(f"LOCK TABLES waited more than {timeout}s; retry when no long transaction "
                                    f"writes the mapped tables") from e
            raise
        return helper

    def close(self) -> None:
        """End the snapshot transaction (read-only: nothing to commit) and close the connection."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            _execute(conn, "ROLLBACK")
        except Exception:  # noqa: BLE001 - the connection may be gone already; closing is all that is left
            pass
        _close_quietly(conn)

    # ------------------------------------------------------------------ schema

    def _aggregate_plan(self, conn: Any, flavor: Flavor, agg: AggregateMapping) -> _AggregatePlan:
        root = self._table_plan(conn, flavor, agg.root)
        children = []
        for child in agg.children:
            plan = self._table_plan(conn, flavor, child)
            if len(child.parent_key) != len(agg.root.id):
                raise SnapshotError(f"{agg.aggregate}: child {child.name} has parent_key {child.parent_key} "
                                    f"but the root id is {agg.root.id}")
            children.append((child, plan))
        return _AggregatePlan(agg, root, children)

    def _table_plan(self, conn: Any, flavor: Flavor, tm: TableMapping) -> _TablePlan:
        schema, table = tm.schema_name, tm.table_name
        rows = _dict_query(conn, "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, "
                                 "NUMERIC_SCALE, DATETIME_PRECISION, CHARACTER_SET_NAME, CHARACTER_OCTET_LENGTH, "
                                 "COLUMN_DEFAULT "
                                 "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                                 "ORDER BY ORDINAL_POSITION", (schema, table))
        if not rows:
            raise SnapshotError(f"table {tm.table} does not exist (or user {self.settings.user} may not see it)")
        engine = _query(conn, "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND "
                              "TABLE_NAME = %s", (schema, table))
        if engine and engine[0][0] and _text(engine[0][0]).lower() != "innodb":
            log.warning("mapped table is not InnoDB: its snapshot is not consistent with the position",
                        table=tm.table, engine=_text(engine[0][0]))
        jsons: set[str] = set()
        if flavor == "mariadb":
            checks = _query(conn, "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                                  "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s", (schema, table))
            jsons = json_checked_columns([_text(r[0]) for r in checks])
        all_columns = [SnapshotColumn.from_information_schema(r, jsons) for r in rows]
        by_name = {c.name: c for c in all_columns}

        described = tm.table in self.describe
        needed = None if described else tm.columns()  # None: every column (fields '*'), like the binlog source
        missing_keys = [c for c in [*tm.id, *getattr(tm, "parent_key", [])] if c not in by_name]
        if missing_keys:
            raise SnapshotError(f"{tm.table} has no column {', '.join(map(repr, missing_keys))} "
                                f"(named as id/parent_key in the mapping)")
        if needed is not None:
            absent = sorted(set(needed) - set(by_name) - tm.optional_columns())   # optional: null until added
            if absent:
                log.warning("mapped columns missing from the table", table=tm.table, missing=absent,
                            columns=list(by_name))

        order = self._order_key(conn, tm, by_name)
        wanted = set(by_name) if needed is None else (set(needed) & set(by_name))
        selected = [c for c in all_columns if c.name in wanted or c.name in order]
        keep = [c.name in wanted for c in selected]
        norms = []
        for c in selected:
            try:
                norms.append(normalizer_for(c))
            except SnapshotError as e:
                raise SnapshotError(f"{tm.table}: {e}") from None
        for name in order:
            col = by_name[name]
            if col.data_type not in _KEY_TYPES:
                raise SnapshotError(f"{tm.table}: column {name!r} ({col.column_type}) cannot order the snapshot "
                                    f"(keyset pagination); map an integer, decimal, string, binary or temporal "
                                    f"id column")
        shape = None
        if described:
            pk = _query(conn, "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND "
                              "TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", (schema, table))
            info = {str(r["COLUMN_NAME"]): (str(r.get("IS_NULLABLE") or "YES").upper() == "YES",
                                            None if r.get("COLUMN_DEFAULT") is None else _text(r["COLUMN_DEFAULT"]),
                                            str(r["DATA_TYPE"]).lower()) for r in rows}
            shape = TableShape(tm.table, tuple(all_columns), tuple(_text(r[0]) for r in pk), info)
        return _TablePlan(tm.table, tm, selected, keep, norms, order, shape)

    def table_shape(self, aggregate: str, table: str) -> TableShape | None:
        """The change stream's description of a table as this snapshot reads it for `aggregate` (after open())."""
        for plan in self._plans:
            if plan.name == aggregate:
                for tp in [plan.root, *(c for _, c in plan.children)]:
                    if tp.table == table:
                        return tp.shape
        return None

    def _order_key(self, conn: Any, tm: TableMapping, by_name: dict[str, SnapshotColumn]) -> list[str]:
        """The mapping's id, plus the primary key's other columns when id is not unique by itself.

        Keyset pagination skips rows whose key equals the last one of a page, so the key
        must be unique (rows with a NULL key column are not read: they could not be routed)."""
        rows = _dict_query(conn, "SELECT INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, SUB_PART "
                                 "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                                 "ORDER BY INDEX_NAME, SEQ_IN_INDEX", (tm.schema_name, tm.table_name))
        indexes: dict[str, tuple[bool, list[str], bool]] = {}
        for r in rows:
            name = str(r["INDEX_NAME"])
            unique, cols, prefix = indexes.get(name, (int(r["NON_UNIQUE"]) == 0, [], False))
            cols.append(str(r["COLUMN_NAME"]))
            indexes[name] = (unique, cols, prefix or r.get("SUB_PART") is not None)
        key = list(tm.id)
        if isinstance(tm, ChildMapping):
            width = len(tm.parent_key)
            if not any(set(cols[:width]) == set(tm.parent_key) for _, cols, _ in indexes.values()):
                log.warning("no index on the parent key: the snapshot scans the child table once per chunk",
                            table=tm.table, parent_key=tm.parent_key)
        if not any(set(cols[:len(key)]) == set(key) for _, cols, _ in indexes.values()):
            log.warning("no index starting with the id columns: every snapshot page sorts the table",
                        table=tm.table, id=key)
        if any(unique and not prefix and set(cols) <= set(key) for unique, cols, prefix in indexes.values()):
            return key
        pk = indexes.get("PRIMARY")
        if pk is not None:
            return key + [c for c in pk[1] if c not in key]
        for unique, cols, prefix in indexes.values():
            if unique and not prefix and not any(by_name[c].nullable for c in cols if c in by_name):
                return key + [c for c in cols if c not in key]
        raise SnapshotError(f"{tm.table}: the id columns {key} are not unique (no unique index covers them) and "
                            f"the table has no primary key, so the snapshot cannot page through it; add a "
                            f"primary key or a unique index on the id columns")

    # ------------------------------------------------------------------ estimates

    def estimate(self) -> dict[str, int]:
        """Approximate rows per mapped table ("schema.table" -> information_schema TABLE_ROWS)."""
        tables = [tm.table for agg in self.aggregates for tm in agg.tables()]
        if not tables:
            return {}
        conn = self._conn
        own = conn is None
        if own:
            conn = self._connect()
        try:
            cond = " OR ".join(["(TABLE_SCHEMA = %s AND TABLE_NAME = %s)"] * len(tables))
            args = [p for t in tables for p in t.split(".", 1)]
            rows = _query(conn, f"SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
                                f"WHERE {cond}", args)
        finally:
            if own:
                _close_quietly(conn)
        found = {f"{_text(r[0])}.{_text(r[1])}".lower(): int(r[2] or 0) for r in rows}
        return {t: found.get(t.lower(), 0) for t in tables}

    # ------------------------------------------------------------------ reading

    def chunks(self, after: dict[str, Any] | None = None) -> Iterator[SnapshotChunk]:
        """The snapshot in chunks, from the start or from the cursor of an earlier chunk.

        Cursors (JSON-able):
            {"aggregate": "Order", "after": [17]}                     roots after id 17
            {"aggregate": "Order", "after": None}                     the aggregate from its start
            {"aggregate": "Order", "child": "lines", "orphans_after": [903]}   the orphan pass
            {"done": True}                                            nothing left
        """
        if self._conn is None:
            raise RuntimeError("call SnapshotReader.open() before chunks()")
        ai, ci, key = self._parse_cursor(after)
        while ai < len(self._plans):
            plan = self._plans[ai]
            if ci < 0:
                yield from self._root_chunks(ai, key)
                ci, key = 0, None
            while ci < len(plan.children):
                yield from self._orphan_chunks(ai, ci, key)
                ci, key = ci + 1, None
            ai, ci, key = ai + 1, -1, None

    def _parse_cursor(self, cursor: dict[str, Any] | None) -> tuple[int, int, list[Any] | None]:
        """cursor -> (aggregate index, child index or -1 for the roots, key to continue after)."""
        if cursor is None:
            return 0, -1, None
        if not isinstance(cursor, dict):
            raise ValueError(f"a snapshot cursor is a dict, got {type(cursor).__name__}")
        if cursor.get("done"):
            return len(self._plans), -1, None
        names = [p.name for p in self._plans]
        agg = cursor.get("aggregate")
        if agg not in names:
            raise ValueError(f"snapshot cursor names aggregate {agg!r}, not one of {names}")
        ai = names.index(agg)
        plan = self._plans[ai]
        if "orphans_after" in cursor:
            child_names = [c.name for c, _ in plan.children]
            if cursor.get("child") not in child_names:
                raise ValueError(f"snapshot cursor names child {cursor.get('child')!r} of {agg}, not one of "
                                 f"{child_names}")
            ci = child_names.index(cursor["child"])
            key, width = cursor["orphans_after"], len(plan.children[ci][1].order)
        elif "after" in cursor:
            ci, key, width = -1, cursor["after"], len(plan.root.order)
        else:
            raise ValueError(f"snapshot cursor without 'after' or 'orphans_after': {cursor!r}")
        if key is not None and (not isinstance(key, list) or len(key) != width):
            raise ValueError(f"snapshot cursor key {key!r} does not fit the key of {agg} ({width} columns)")
        return ai, ci, key

    def _next_cursor(self, ai: int, ci: int) -> dict[str, Any]:
        """The cursor of the phase after (aggregate ai, child ci; -1 = roots)."""
        plan = self._plans[ai]
        if ci + 1 < len(plan.children):
            return {"aggregate": plan.name, "child": plan.children[ci + 1][0].name, "orphans_after": None}
        if ai + 1 < len(self._plans):
            return {"aggregate": self._plans[ai + 1].name, "after": None}
        return {"done": True}

    def _root_chunks(self, ai: int, key: list[Any] | None) -> Iterator[SnapshotChunk]:
        plan = self._plans[ai]
        root = plan.root
        n = self.chunk_size
        not_null = root.nullable(root.order)
        if key is None and not_null:
            self._warn_null_keys(root, not_null)
        key_cols = root.key_columns(root.order)
        placeholders = [c.placeholder for c in key_cols]
        id_cols = root.key_columns(root.mapping.id)
        while True:
            sql, index = page_sql(root.table, root.select(), root.order, after=key is not None, limit=n + 1,
                                  not_null=not_null, placeholders=placeholders)
            args = [key_cols[i].to_param(key[i]) for i in index] if key is not None else []
            raw = self._fetch(sql, args, root.table)
            more = len(raw) > n
            raw = raw[:n]
            if not raw:
                return
            changes = root.changes(raw)
            parents = _distinct([tuple(root.key_of(r, root.id_idx)) for r in raw])
            parents = [p for p in parents if None not in p]
            if parents:
                for child, cplan in plan.children:
                    changes.extend(self._children(cplan, child, parents, id_cols))
            key = root.key_of(raw[-1], root.order_idx)
            cursor = {"aggregate": plan.name, "after": key} if more else self._next_cursor(ai, -1)
            self.rows_read += len(changes)
            yield SnapshotChunk(plan.name, changes, cursor, len(changes))
            if not more:
                return

    def _children(self, cplan: _TablePlan, child: ChildMapping, parents: list[tuple],
                  id_cols: list[SnapshotColumn]) -> list[RowChange]:
        sql = children_sql(cplan.table, cplan.select(), child.parent_key, len(parents), cplan.order,
                           [c.placeholder for c in id_cols])
        args = [col.to_param(v) for p in parents for col, v in zip(id_cols, p)]
        return cplan.changes(self._fetch(sql, args, cplan.table))

    def _orphan_chunks(self, ai: int, ci: int, key: list[Any] | None) -> Iterator[SnapshotChunk]:
        plan = self._plans[ai]
        child, cplan = plan.children[ci]
        n = self.chunk_size
        not_null = cplan.nullable(cplan.order)
        key_cols = cplan.key_columns(cplan.order)
        placeholders = [c.placeholder for c in key_cols]
        while True:
            sql, index = orphans_sql(cplan.table, plan.root.table, cplan.select("c"), child.parent_key,
                                     plan.mapping.root.id, cplan.order, after=key is not None, limit=n + 1,
                                     not_null=not_null, placeholders=placeholders)
            args = [key_cols[i].to_param(key[i]) for i in index] if key is not None else []
            raw = self._fetch(sql, args, cplan.table)
            more = len(raw) > n
            raw = raw[:n]
            if not raw:
                return
            changes = cplan.changes(raw)
            key = cplan.key_of(raw[-1], cplan.order_idx)
            cursor = ({"aggregate": plan.name, "child": child.name, "orphans_after": key} if more
                      else self._next_cursor(ai, ci))
            self.rows_read += len(changes)
            yield SnapshotChunk(plan.name, changes, cursor, len(changes), orphans=True)
            if not more:
                return

    def _warn_null_keys(self, root: _TablePlan, nullable: list[str]) -> None:
        cond = " OR ".join(f"{quote_ident(c)} IS NULL" for c in nullable)
        rows = self._fetch(f"SELECT COUNT(*) FROM {table_ref(root.table)} WHERE {cond}", [], root.table)
        count = int(rows[0][0]) if rows else 0
        if count:
            log.warning("rows with a NULL id are not part of the snapshot (they cannot be routed to an aggregate)",
                        table=root.table, rows=count, id=list(root.mapping.id))

    def read_locked(self, conn: Any, aggregate: str, ids: Sequence[str]) -> list[RowChange]:
        """Ad-hoc re-snapshot (`cdc-bridge snapshot --aggregate A --id X`): the rows of these aggregates, root by
        id and their children, as snapshot RowChanges, read with LOCK IN SHARE MODE inside the caller's open
        transaction on `conn`: no other transaction can change them until the caller commits (next-key locks
        also keep new children out), so what is read is exactly the state at the caller's commit."""
        agg = next(a for a in self.aggregates if a.aggregate == aggregate)
        version = str(_query(conn, "SELECT VERSION()")[0][0])
        flavor: Flavor = detect_flavor(version) if self.settings.flavor == "auto" else self.settings.flavor
        self._conn = conn
        plan = self._aggregate_plan(conn, flavor, agg)
        root = plan.root
        id_cols = root.key_columns(agg.root.id)
        keys = [tuple(str(i).split(":", len(id_cols) - 1)) if len(id_cols) > 1 else (str(i),) for i in ids]
        sql = children_sql(root.table, root.select(), agg.root.id, len(keys), root.order,
                           [c.placeholder for c in id_cols]) + " LOCK IN SHARE MODE"
        raw = self._fetch(sql, [v for k in keys for v in k], root.table)
        changes = root.changes(raw)
        parents = [p for p in _distinct([tuple(root.key_of(r, root.id_idx)) for r in raw]) if None not in p]
        if parents:
            for child, cplan in plan.children:
                csql = children_sql(cplan.table, cplan.select(), child.parent_key, len(parents), cplan.order,
                                    [c.placeholder for c in id_cols]) + " LOCK IN SHARE MODE"
                args = [col.to_param(v) for p in parents for col, v in zip(id_cols, p)]
                changes.extend(cplan.changes(self._fetch(csql, args, cplan.table)))
        self._conn = None
        return changes

    def _fetch(self, sql: str, args: Sequence[Any], table: str) -> list[tuple]:
        """Run a data query and return its rows as raw bytes (no PyMySQL conversions)."""
        conn = self._conn
        try:
            with _raw_results(conn), conn.cursor() as cur:
                cur.execute(sql, tuple(args) if args else None)
                return list(cur.fetchall())
        except pymysql.err.MySQLError as e:
            if _code(e) == ER_TABLE_DEF_CHANGED:
                raise SnapshotError(f"{table} was altered while the snapshot was read ({_reason(e)}); take the "
                                    f"snapshot again (or resume from the last chunk's cursor with a new reader)") from e
            raise SnapshotError(f"snapshot read of {table} failed: {_reason(e)}; resume from the last chunk's "
                                f"cursor with a new SnapshotReader") from e


# ---------------------------------------------------------------- progress


class SnapshotProgress:
    """Rows done against the estimate, rows/s and ETA, rendered as one terminal line.

        progress = SnapshotProgress.from_estimate(aggregates, reader.estimate())
        for chunk in reader.chunks(after=cursor):
            progress.update(chunk)
            if tty:
                print("\\r" + progress.render(), end="", file=sys.stderr)
        progress.finish()

    `expected` is what reader.estimate() returns (rows per table), or rows per aggregate
    (from_estimate: then the line names "Order (1/2)" and an aggregate's expected rows
    become what was read once the cursor moves past it), or a plain number. Estimates come
    from information_schema and are approximate: the line never shows 100% before finish().
    The numbers are for the whole snapshot; the rate is over the last `window_seconds`.
    """

    def __init__(self, expected: dict[str, int] | int = 0, *, clock: Callable[[], float] = time.monotonic,
                 window_seconds: float = 10.0) -> None:
        items = expected.items() if isinstance(expected, dict) else [("", expected)]
        self.expected: dict[str, int] = {k: max(0, int(v or 0)) for k, v in items}
        self.aggregates: list[str] = []      # known aggregate names, in snapshot order (from_estimate)
        self.rows_done = 0                   # rows counted, skipped ones included
        self.rows_skipped = 0                # done before a resume: not part of the rate
        self.by_aggregate: dict[str, int] = {}
        self.current: str | None = None
        self.finished = False
        self._clock = clock
        self._window = window_seconds
        self._samples: collections.deque[tuple[float, int]] = collections.deque([(clock(), 0)])

    @classmethod
    def from_estimate(cls, aggregates: list[AggregateMapping], table_rows: dict[str, int],
                      **kwargs: Any) -> "SnapshotProgress":
        """Expected rows per aggregate: the estimates of its root and child tables."""
        progress = cls({a.aggregate: sum(int(table_rows.get(tm.table, 0) or 0) for tm in a.tables())
                        for a in aggregates}, **kwargs)
        progress.aggregates = [a.aggregate for a in aggregates]
        return progress

    def skip(self, rows: int) -> None:
        """Rows read before a resume (they count as done, not toward the rate)."""
        self.rows_done += int(rows)
        self.rows_skipped += int(rows)

    def add(self, rows: int, aggregate: str | None = None) -> None:
        """Count `rows` just read (of `aggregate`, when known)."""
        rows = int(rows)
        self.rows_done += rows
        if aggregate is not None:
            self.current = aggregate
            self.by_aggregate[aggregate] = self.by_aggregate.get(aggregate, 0) + rows
        now = self._clock()
        self._samples.append((now, self.rows_done - self.rows_skipped))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()

    def update(self, chunk: SnapshotChunk) -> None:
        """Count a chunk; a chunk whose cursor leaves its aggregate completes that aggregate."""
        self.add(chunk.rows, chunk.aggregate)
        if chunk.cursor.get("aggregate") != chunk.aggregate:
            self.finish(chunk.aggregate)

    def finish(self, aggregate: str | None = None) -> None:
        """Mark an aggregate (its expected rows become what was read) or the whole snapshot as read."""
        if aggregate is None:
            self.finished = True
        elif aggregate in self.expected and not self.rows_skipped:
            self.expected[aggregate] = self.by_aggregate.get(aggregate, 0)

    @property
    def rows_total(self) -> int:
        return self.rows_done if self.finished else max(sum(self.expected.values()), self.rows_done)

    @property
    def ratio(self) -> float:
        """Fraction done, 0..1 (1 only after finish())."""
        if self.finished:
            return 1.0
        total = self.rows_total
        return min(0.99, self.rows_done / total) if total else 0.0

    @property
    def rate(self) -> float:
        """Rows per second over the last `window_seconds`."""
        t0, n0 = self._samples[0]
        t1, n1 = self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until the expected rows are read, at the current rate; None while unknown."""
        if self.finished:
            return 0.0
        rate = self.rate
        return (self.rows_total - self.rows_done) / rate if rate > 0 else None

    def render(self) -> str:
        """e.g. 'snapshot  Order  45,000/100,000 rows  45%  12,300 rows/s  ETA 4s'."""
        label = ""
        if self.current is not None:
            label = self.current
            if len(self.aggregates) > 1 and self.current in self.aggregates:
                label += f" ({self.aggregates.index(self.current) + 1}/{len(self.aggregates)})"
            label += "  "
        eta = self.eta_seconds
        return (f"snapshot  {label}{self.rows_done:,}/{self.rows_total:,} rows  {int(100 * self.ratio)}%  "
                f"{self.rate:,.0f} rows/s  ETA {_duration(eta) if eta is not None else '?'}")


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# ---------------------------------------------------------------- connection helpers


def _connect_snapshot(settings: SourceSettings, query_timeout: float) -> Any:
    # one query may scan a whole table (the orphan pass): the streaming read timeout is too short
    return connect(settings, read_timeout=max(settings.read_timeout_seconds, query_timeout),
                   write_timeout=max(settings.read_timeout_seconds, query_timeout))


@contextlib.contextmanager
def _raw_results(conn: Any) -> Iterator[None]:
    """Results of the queries inside as the server's bytes: no decoding, no conversions."""
    saved = (getattr(conn, "use_unicode", True), getattr(conn, "decoders", {}))
    conn.use_unicode, conn.decoders = False, {}
    try:
        yield
    finally:
        conn.use_unicode, conn.decoders = saved


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)


def _execute(conn: Any, sql: str, args: Any = None) -> None:
    with conn.cursor() as cur:
        cur.execute(sql, args)


def _query(conn: Any, sql: str, args: Any = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _dict_query(conn: Any, sql: str, args: Any = None) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        cols = [str(d[0]).upper() for d in cur.description]
        return [{k: (_text(v) if isinstance(v, (bytes, bytearray)) else v) for k, v in zip(cols, r)}
                for r in cur.fetchall()]


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
        pass


def _code(e: BaseException) -> int | None:
    return e.args[0] if e.args and isinstance(e.args[0], int) else None


def _reason(e: BaseException) -> str:
    if isinstance(e, pymysql.err.MySQLError) and len(e.args) >= 2:
        return f"{e.args[1]} ({e.args[0]})"
    return f"{type(e).__name__}: {e}"


def _distinct(items: list[tuple]) -> list[tuple]:
    return list(dict.fromkeys(items))
