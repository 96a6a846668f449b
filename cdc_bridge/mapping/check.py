"""`check`: validate the mappings offline, or against the live database and its binlog settings.

    report = check_offline("mappings")
    report = check_live("mappings", {"host": ..., "port": 3306, "user": ..., "password": ...})
    print(report.render()); sys.exit(report.exit_code)

    python -m cdc_bridge.mapping.check --mappings mappings [--db-host H --db-port P --db-user U --db-password PW]

Exit codes (CheckReport.exit_code; warnings never change it, except with --strict):
    0  all is well
    1  mapping errors: a file is invalid (nothing else is checked against the schema)
    2  schema errors: a mapped schema/table/column is missing, a table has no primary key,
       a parent key's type differs from the root id's, ...
    3  server errors: cannot connect, or binlog settings / replication privileges are wrong
When several kinds of errors are found, the smallest code wins (fix them in that order).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from cdc_bridge.mapping.errors import MappingError
from cdc_bridge.mapping.loader import MappingSet, key_path, load_mappings
from cdc_bridge.mapping.schema import AggregateMapping, ChildMapping, Condition, TableMapping

Severity = Literal["error", "warning"]
Category = Literal["mapping", "schema", "server"]
EXIT_CODES: dict[str, int] = {"mapping": 1, "schema": 2, "server": 3}


@dataclass(frozen=True, slots=True)
class CheckProblem:
    severity: Severity
    category: Category
    message: str
    file: str | None = None
    line: int | None = None
    key: str = ""

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"{self.key}: " if self.key else ""
        return f"{self.severity.upper():7} {where}{key}{self.message}"


@dataclass
class CheckReport:
    """What `check` found. problems holds errors and warnings; ok means no errors."""

    directory: str
    mappings: MappingSet | None = None
    problems: list[CheckProblem] = field(default_factory=list)
    live: bool = False
    server: str | None = None          # e.g. "MariaDB 10.11.19 at 127.0.0.1:3306"
    strict: bool = False               # warnings count as errors (of their category)
    schema_checked: bool = False       # the live check compared the mappings with the tables

    @property
    def errors(self) -> list[CheckProblem]:
        return [p for p in self.problems if p.severity == "error" or self.strict]

    @property
    def warnings(self) -> list[CheckProblem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        codes = [EXIT_CODES[p.category] for p in self.errors]
        return min(codes) if codes else 0

    def add(self, severity: Severity, category: Category, message: str, aggregate: str | None = None,
            loc: tuple = ()) -> None:
        file = line = None
        if aggregate is not None and self.mappings is not None:
            file, line = self.mappings.locate(aggregate, loc)
        self.problems.append(CheckProblem(severity, category, message, file, line, key_path(loc)))

    def render(self) -> str:
        out: list[str] = []
        if self.mappings is not None:
            out.append(f"Mappings in {self.directory}: what will be captured and where it goes")
            out.append(_blocks(capture_rows(self.mappings)))
        if self.problems:
            out.append("")
            out.append("Problems:")
            out.extend(f"  {p}" for p in self.problems)
        out.append("")
        scope = f"live check against {self.server}" if self.live and self.server else (
            "live check" if self.live else "offline check (no database connection: tables, columns, keys "
            "and binlog settings not verified)")
        if self.live and not self.schema_checked:
            scope += (" (server settings only: tables and columns were not checked because the mappings have "
                      "errors; fix them and run check again)" if self.server else
                      " (nothing was checked on the server: no connection)")
        n_err, n_warn = len(self.errors), len(self.warnings)
        if self.ok:
            what = ""
            if self.mappings is not None:
                what = f"{len(self.mappings.aggregates)} aggregate(s), {len(self.mappings.by_table)} table(s); "
            out.append(f"OK: {what}{scope}" + (f"; {n_warn} warning(s)" if n_warn else ""))
        else:
            out.append(f"FAILED (exit code {self.exit_code}): {n_err} error(s), {n_warn} warning(s); {scope}")
        return "\n".join(out)


# --------------------------------------------------------------------------- rendering


def _lit(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return str(v)


def _filter_text(where: dict[str, Condition]) -> str:
    parts = []
    for col, cond in where.items():
        for op, v in cond.operators().items():
            if op == "is_null":
                parts.append(f"{col} IS NULL" if v else f"{col} IS NOT NULL")
            elif op == "eq":
                parts.append(f"{col} IS NULL" if v is None else f"{col} = {_lit(v)}")
            elif op == "ne":
                parts.append(f"{col} IS NOT NULL" if v is None else f"{col} != {_lit(v)}")
            elif op == "in":
                parts.append(f"{col} IN ({', '.join(_lit(x) for x in v or [])})")
            elif op == "not_in":
                parts.append(f"{col} NOT IN ({', '.join(_lit(x) for x in v or [])})")
    return " AND ".join(parts) or "(all rows)"


def _fields_text(tm: TableMapping) -> str:
    plan = tm.field_plan()
    if plan is None:
        return "* (all columns)" + (f" except {', '.join(tm.exclude)}" if tm.exclude else "")
    parts = []
    optional = tm.optional_columns()
    for col, name, typ in plan:
        s = col if name == col else f"{col}->{name}"
        s = s if typ == "auto" else f"{s}:{typ}"
        parts.append(f"{s} (optional)" if col in optional else s)
    return ", ".join(parts)


def capture_rows(mappings: MappingSet) -> list[list[str]]:
    rows = []
    for agg in mappings.aggregates:
        for tm in agg.tables():
            child = isinstance(tm, ChildMapping)
            rows.append([
                tm.table, agg.aggregate,
                f"{tm.name} ({tm.entity_name})" if child else "root",  # type: ignore[attr-defined]
                ", ".join(tm.id),
                ", ".join(tm.parent_key) if child else "-",  # type: ignore[attr-defined]
                _fields_text(tm), _filter_text(tm.where),
                " ".join(agg.command_type(tm, op) for op in ("insert", "update", "delete", "snapshot")),
                agg.events_topic,
            ])
    return rows


def _blocks(rows: list[list[str]], width: int = 100) -> str:
    """One block per table, at most `width` columns (a terminal, a CI log): the table, where it goes,
    then fields, filter and commands on wrapped lines."""
    out = []
    for table, aggregate, entity, ids, parent_key, fields, filt, commands, topic in rows:
        head = f"{table} -> {aggregate} {entity}, id: {ids}"
        if parent_key != "-":
            head += f", parent key: {parent_key}"
        out.extend(textwrap.wrap(f"{head} -> topic {topic}", width, initial_indent="  ", subsequent_indent="      "))
        for label, text in (("fields", fields), ("filter", filt), ("commands", commands)):
            out.extend(textwrap.wrap(text, width, initial_indent=f"      {label + ':':<10}",
                                     subsequent_indent=" " * 16, break_on_hyphens=False))
    return "\n".join(out)


# --------------------------------------------------------------------------- offline


def check_offline(directory: str | Path) -> CheckReport:
    """Validate the mapping files only (format, cross-key and cross-file rules, decider imports)."""
    report = CheckReport(directory=str(directory))
    try:
        report.mappings = load_mappings(directory)
    except MappingError as e:
        for p in e.errors:
            report.problems.append(CheckProblem("error", "mapping", p.message, p.file, p.line, p.key))
    return report


# --------------------------------------------------------------------------- live


@dataclass
class _Column:
    name: str
    data_type: str
    column_type: str
    nullable: bool

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type.lower()

    def describe(self) -> str:
        return self.data_type + (" unsigned" if self.unsigned else "")


@dataclass
class _Table:
    schema: str
    name: str
    table_type: str
    columns: dict[str, _Column] = field(default_factory=dict)
    unique_keys: dict[str, list[str]] = field(default_factory=dict)  # index name -> columns; PRIMARY included

    @property
    def primary_key(self) -> list[str] | None:
        return self.unique_keys.get("PRIMARY")


def check_live(directory: str | Path, conn_settings: dict[str, Any], strict: bool = False) -> CheckReport:
    """check_offline plus: the mapped schemas/tables/columns/keys exist and fit, and the server's
    binlog settings and the user's replication privileges are what cdc-bridge needs.

    conn_settings: dict(host, port, user, password), passed to pymysql.connect.
    """
    import pymysql

    report = check_offline(directory)
    report.live = True
    report.strict = strict
    settings = {"connect_timeout": 5, "charset": "utf8mb4", **conn_settings}
    where = f"{settings.get('host')}:{settings.get('port', 3306)}"
    try:
        conn = pymysql.connect(**settings)
    except pymysql.MySQLError as e:
        hint = ""
        if e.args and e.args[0] == 1045:   # access denied
            hint = (" — no password was given: set the environment variable CDC_BRIDGE__SOURCE__PASSWORD (or "
                    "source.password in the config, or --db-password)" if "using password: NO" in str(e) else
                    " — check source.user and the password in CDC_BRIDGE__SOURCE__PASSWORD / source.password")
        report.add("error", "server", f"cannot connect to {where} as {settings.get('user')!r}: {e}{hint}")
        return report
    try:
        with conn.cursor() as cur:
            _check_server(cur, report, where)
            if report.mappings is not None:
                _check_schema(cur, report, report.mappings)
                report.schema_checked = True
    except pymysql.MySQLError as e:
        report.add("error", "server", f"query failed on {where}: {e}")
    finally:
        conn.close()
    return report


def _version_tuple(version: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


_SERVER_VARS = ("log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "binlog_row_value_options")


def _check_server(cur, report: CheckReport, where: str) -> None:
    cur.execute("SELECT VERSION()")
    version = str(cur.fetchone()[0])
    mariadb = "mariadb" in version.lower()
    v = _version_tuple(version)
    report.server = f"{'MariaDB' if mariadb else 'MySQL'} {version.split('-')[0]} at {where}"
    names = ", ".join(f"'{n}'" for n in _SERVER_VARS)
    cur.execute(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
    gv = {str(k).lower(): str(val) for k, val in cur.fetchall()}
    for problem in server_setting_problems(gv, mariadb, v):
        report.add(problem[0], "server", problem[1])
    cur.execute("SHOW GRANTS")
    grants = [str(r[0]) for r in cur.fetchall()]
    for problem in grant_problems(grants):
        report.add("error", "server", problem)


def server_setting_problems(gv: dict[str, str], mariadb: bool, version: tuple[int, ...]) -> list[tuple[Severity, str]]:
    """[(severity, message)] for SHOW GLOBAL VARIABLES values (lower-case names)."""
    out: list[tuple[Severity, str]] = []
    after = "set it in the server configuration and restart, or SET GLOBAL it (new sessions only)"
    if gv.get("log_bin", "OFF").upper() not in ("ON", "1"):
        out.append(("error", "log_bin is OFF: binary logging is disabled, there is nothing to tail; start the "
                             "server with log_bin=<basename> (and a server_id)"))
    fmt = gv.get("binlog_format", "").upper()
    if fmt != "ROW":
        out.append(("error", f"binlog_format is {fmt or 'unknown'}, must be ROW: STATEMENT and MIXED log SQL "
                             f"text instead of row images, which cannot be turned into row changes; {after}"))
    image = gv.get("binlog_row_image", "").upper()
    if image != "FULL":
        out.append(("error", f"binlog_row_image is {image or 'unknown'}, must be FULL: MINIMAL and NOBLOB leave "
                             "columns out of the before/after images, so filters, payloads and `before` would "
                             f"miss values; {after}"))
    supports_metadata = version >= ((10, 5, 0) if mariadb else (8, 0, 1))
    if supports_metadata:
        meta = gv.get("binlog_row_metadata", "").upper()
        if meta != "FULL":
            out.append(("error", f"binlog_row_metadata is {meta or 'unknown'}, must be FULL: without it the binlog "
                                 "does not carry column names, and rows written before an ALTER TABLE would be "
                                 f"decoded with the new column list; {after}"))
    else:
        out.append(("warning", f"this server ({'MariaDB' if mariadb else 'MySQL'} {'.'.join(map(str, version))}) "
                               "has no binlog_row_metadata: column names are taken from information_schema, "
                               "which is wrong while a table is being altered (MariaDB >= 10.5 or MySQL >= 8.0.1 "
                               "recommended)"))
    if "partial_json" in gv.get("binlog_row_value_options", "").lower():
        out.append(("error", "binlog_row_value_options=PARTIAL_JSON: JSON updates are logged as diffs that "
                             f"cannot be decoded into full values; set it to ''; {after}"))
    return out


_PRIV_ALIASES = {"REPLICATION REPLICA": "REPLICATION SLAVE", "BINLOG MONITOR": "REPLICATION CLIENT"}
_NEEDED = {
    "REPLICATION SLAVE": "to read the binlog (COM_BINLOG_DUMP)",
    "REPLICATION CLIENT": "to read binlog positions (SHOW MASTER STATUS / SHOW BINARY LOGS; "
                          "BINLOG MONITOR on MariaDB >= 10.5)",
}


def global_privileges(grants: Iterable[str]) -> set[str]:
    """Privileges granted ON *.* in SHOW GRANTS output, upper-case, MariaDB aliases folded."""
    privs: set[str] = set()
    for g in grants:
        m = re.match(r"^\s*GRANT\s+(.+?)\s+ON\s+(\S+)\s+TO\s", g, re.I | re.S)
        if not m or m.group(2).replace("`", "") != "*.*":
            continue
        for p in m.group(1).split(","):
            p = re.sub(r"\s+", " ", p.strip().upper())
            privs.add(_PRIV_ALIASES.get(p, p))
    return privs


def grant_problems(grants: list[str]) -> list[str]:
    privs = global_privileges(grants)
    if privs & {"ALL", "ALL PRIVILEGES"}:
        return []
    missing = [p for p in _NEEDED if p not in privs]
    if not missing:
        return []
    roles = any(re.match(r"^\s*GRANT\s+\S+\s+TO\s", g, re.I) and " ON " not in g.upper() for g in grants)
    hint = " (granted through a role? roles are not followed: grant them to the user directly)" if roles else ""
    return [f"the user lacks {p} {_NEEDED[p]}: GRANT {p} ON *.* TO <user>{hint}" for p in missing]


def _suggest(word: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    lower = {c.lower(): c for c in choices}
    if word.lower() in lower:
        return f" (it is spelled {lower[word.lower()]!r}: names are case-sensitive here)"
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _load_schema(cur, schemas: list[str]) -> tuple[set[str], dict[tuple[str, str], _Table]]:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
    all_schemas = {str(r[0]) for r in cur.fetchall()}
    tables: dict[tuple[str, str], _Table] = {}
    present = [s for s in schemas if s in all_schemas]
    if not present:
        return all_schemas, tables
    marks = ", ".join(["%s"] * len(present))
    cur.execute(f"SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                f"WHERE TABLE_SCHEMA IN ({marks})", present)
    for s, t, typ in cur.fetchall():
        tables[(s, t)] = _Table(s, t, str(typ))
    cur.execute(f"SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE "
                f"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({marks}) "
                f"ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION", present)
    for s, t, c, dt, ct, nullable in cur.fetchall():
        if (s, t) in tables:
            tables[(s, t)].columns[c] = _Column(c, str(dt).lower(), str(ct).lower(), nullable == "YES")
    cur.execute(f"SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
                f"WHERE TABLE_SCHEMA IN ({marks}) AND NON_UNIQUE = 0 "
                f"ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX", present)
    for s, t, idx, c in cur.fetchall():
        if (s, t) in tables:
            tables[(s, t)].unique_keys.setdefault(str(idx), []).append(str(c))
    return all_schemas, tables


def _column_refs(tm: TableMapping, base: tuple) -> dict[str, list[tuple]]:
    """column -> key paths of the mapping that name it."""
    refs: dict[str, list[tuple]] = {}
    if tm.fields != "*":
        for col in tm.fields:
            refs.setdefault(col, []).append(base + ("fields", col))
    for col in tm.exclude:
        refs.setdefault(col, []).append(base + ("exclude", col))
    for col in tm.id:
        refs.setdefault(col, []).append(base + ("id", col))
    if isinstance(tm, ChildMapping):
        for col in tm.parent_key:
            refs.setdefault(col, []).append(base + ("parent_key", col))
    for col in tm.where:
        refs.setdefault(col, []).append(base + ("where", col))
    return refs


_SILENT_RULES = {"CASCADE", "SET NULL", "SET DEFAULT"}


def _check_cascades(cur, report: CheckReport, mappings: MappingSet, schemas: list[str]) -> None:
    """Foreign keys whose ON DELETE / ON UPDATE action changes rows of a mapped table: InnoDB applies them
    inside the storage engine, so the binlog has no row event for those changes and the bridge never sees
    them. A warning per constraint and action, at the mapped child table's line."""
    if not schemas:
        return
    marks = ", ".join(["%s"] * len(schemas))
    cur.execute(f"SELECT rc.CONSTRAINT_SCHEMA, rc.TABLE_NAME, rc.CONSTRAINT_NAME, rc.REFERENCED_TABLE_NAME, "
                f"rc.DELETE_RULE, rc.UPDATE_RULE, GROUP_CONCAT(k.COLUMN_NAME ORDER BY k.ORDINAL_POSITION) "
                f"FROM information_schema.REFERENTIAL_CONSTRAINTS rc JOIN information_schema.KEY_COLUMN_USAGE k "
                f"ON k.CONSTRAINT_SCHEMA = rc.CONSTRAINT_SCHEMA AND k.CONSTRAINT_NAME = rc.CONSTRAINT_NAME "
                f"AND k.TABLE_NAME = rc.TABLE_NAME WHERE rc.CONSTRAINT_SCHEMA IN ({marks}) "
                f"GROUP BY rc.CONSTRAINT_SCHEMA, rc.TABLE_NAME, rc.CONSTRAINT_NAME, rc.REFERENCED_TABLE_NAME, "
                f"rc.DELETE_RULE, rc.UPDATE_RULE", schemas)
    for schema, table, name, parent, on_delete, on_update, cols in cur.fetchall():
        entries = mappings.by_table.get(f"{schema}.{table}")
        if not entries:
            continue
        for when, rule in (("DELETE", str(on_delete).upper()), ("UPDATE", str(on_update).upper())):
            if rule not in _SILENT_RULES:
                continue
            change = "deletes" if rule == "CASCADE" and when == "DELETE" else (
                "updates" if rule == "CASCADE" else f"sets {rule.split()[-1]} in")
            for agg, tm, entity in entries:
                loc = ("root", "table") if entity == "root" else (
                    "children", [c.name for c in agg.children].index(entity), "table")
                report.add("warning", "schema",
                           f"foreign key {name}: ON {when} {rule} — an {when} of {schema}.{parent} {change} rows of "
                           f"{schema}.{table} ({cols}) inside InnoDB, without row events in the binlog: the bridge "
                           f"never sees those changes and {agg.aggregate} state drifts. Do the {when.lower()} of "
                           f"{table} rows in the application (then they are in the binlog), or change the foreign "
                           f"key to RESTRICT; after such a change, re-snapshot (docs/mappings.md, cascades and "
                           "triggers)", agg.aggregate, loc)


def _check_lookups(report: CheckReport, mappings: MappingSet, tables: dict[tuple[str, str], _Table]) -> None:
    """The reference tables of lookups and the columns their hops use exist (else the fields stay null)."""
    for agg in mappings.aggregates:
        entries: list[tuple[tuple, TableMapping]] = [(("root",), agg.root)]
        entries += [(("children", i), c) for i, c in enumerate(agg.children)]
        for base, tm in entries:
            for name, lk in tm.lookups.items():
                for j, step in enumerate(lk.via):
                    loc = base + ("lookups", name, "via", j)
                    schema, _, table = step.table.partition(".")
                    t = tables.get((schema, table))
                    if t is None:
                        report.add("error", "schema", f"lookup {name!r}: unknown reference table {step.table}"
                                   f"{_suggest(table, [n for (s, n) in tables if s == schema])}", agg.aggregate, loc)
                        continue
                    for col in (step.key, step.take):
                        if col not in t.columns:
                            report.add("error", "schema", f"lookup {name!r}: unknown column {col!r} in {step.table}"
                                       f"{_suggest(col, t.columns)}", agg.aggregate, loc)


def _check_schema(cur, report: CheckReport, mappings: MappingSet) -> None:
    schemas = sorted({tm.schema_name for entries in mappings.by_table.values() for _, tm, _ in entries}
                     | {t.split(".", 1)[0] for t in mappings.references})
    all_schemas, tables = _load_schema(cur, schemas)
    _check_cascades(cur, report, mappings, [s for s in schemas if s in all_schemas])
    _check_lookups(report, mappings, tables)
    for agg in mappings.aggregates:
        root_table: _Table | None = None
        entries: list[tuple[tuple, TableMapping]] = [(("root",), agg.root)]
        entries += [(("children", i), c) for i, c in enumerate(agg.children)]
        for base, tm in entries:
            t = _check_table(report, agg, tm, base, all_schemas, tables)
            if base == ("root",):
                root_table = t
            if t is None:
                continue
            if isinstance(tm, ChildMapping) and root_table is not None:
                _check_parent_key(report, agg, tm, base, t, root_table)
        if root_table is not None and agg.root.fields == "*":
            available = [c for c in root_table.columns if c not in agg.root.exclude]
            for i, tr in enumerate(agg.root.transitions):
                if tr.field not in available:
                    report.add("error", "schema", f"transition field {tr.field!r} is not a column of "
                               f"{agg.root.table}{_suggest(tr.field, available)}", agg.aggregate,
                               ("root", "transitions", i, "field"))
            for i, child in enumerate(agg.children):
                for j, name in enumerate(child.enrich):
                    if name not in available:
                        report.add("error", "schema", f"enrich field {name!r} is not a column of "
                                   f"{agg.root.table}{_suggest(name, available)}", agg.aggregate,
                                   ("children", i, "enrich", j))


def _check_table(report: CheckReport, agg: AggregateMapping, tm: TableMapping, base: tuple,
                 all_schemas: set[str], tables: dict[tuple[str, str], _Table]) -> _Table | None:
    name = agg.aggregate
    if tm.schema_name not in all_schemas:
        report.add("error", "schema", f"unknown schema {tm.schema_name!r}{_suggest(tm.schema_name, all_schemas)} "
                   "(or the user has no privilege on it)", name, base + ("table",))
        return None
    t = tables.get((tm.schema_name, tm.table_name))
    if t is None:
        in_schema = [n for (s, n) in tables if s == tm.schema_name]
        report.add("error", "schema", f"unknown table {tm.table}{_suggest(tm.table_name, in_schema)} (or the user "
                   "has no SELECT on it)", name, base + ("table",))
        return None
    if t.table_type.upper() == "VIEW":
        report.add("error", "schema", f"{tm.table} is a view: views have no row events in the binlog; map the "
                   "underlying table", name, base + ("table",))
        return None
    optional = tm.optional_columns()
    for col, locs in _column_refs(tm, base).items():
        if col not in t.columns and col in optional and len(locs) == 1:
            report.add("warning", "schema", f"column {col!r} does not exist in {tm.table} yet (optional: true): its "
                       "field is null in every event until the column is added", name, locs[0])
        elif col not in t.columns:
            used = ", ".join(key_path(loc[len(base):-1]) for loc in locs)
            report.add("error", "schema", f"unknown column {col!r} in {tm.table} (used in {used})"
                       f"{_suggest(col, t.columns)}", name, locs[0])
    if t.primary_key is None:
        report.add("error", "schema", f"{tm.table} has no PRIMARY KEY: without one, an UPDATE or DELETE row image "
                   "cannot be matched reliably to one row (identical rows are indistinguishable, and the server "
                   "itself may apply row events to the wrong duplicate); add a primary key", name, base + ("table",))
    key_cols = set(tm.id) | (set(tm.parent_key) if isinstance(tm, ChildMapping) else set())
    if all(c in t.columns for c in key_cols) and not any(set(cols) <= key_cols for cols in t.unique_keys.values()):
        if isinstance(tm, ChildMapping):
            msg = (f"id ({', '.join(tm.id)}) with parent_key ({', '.join(tm.parent_key)}) is not covered by the "
                   f"primary key nor a UNIQUE key of {tm.table}: rows of one parent may share an id and would "
                   "overwrite each other in the aggregate")
        else:
            msg = (f"id ({', '.join(tm.id)}) is neither the primary key nor a UNIQUE key of {tm.table}: rows with "
                   "the same id would be merged into one aggregate")
        report.add("warning", "schema", msg, name, base + ("id",))
    for col in key_cols:
        c = t.columns.get(col)
        if c is not None and c.nullable and not _where_excludes_null(tm, col):
            what = "parent_key" if isinstance(tm, ChildMapping) and col in tm.parent_key else "id"
            report.add("warning", "schema", f"{what} column {col} of {tm.table} is nullable: rows where it is NULL "
                       "become null_key dead letters", name, base + (what, col))
    for col, cond in tm.where.items():
        c = t.columns.get(col)
        ops = cond.operators()
        if c is not None and not c.nullable and (ops.get("is_null") is True or ("eq" in ops and ops["eq"] is None)):
            report.add("warning", "schema", f"where {col}: null can never hold, {col} is NOT NULL in {tm.table}: "
                       "no row of this table is captured", name, base + ("where", col))
    return t


def _where_excludes_null(tm: TableMapping, col: str) -> bool:
    """The mapping's `where` drops rows where `col` is NULL (they never reach the key check)."""
    from cdc_bridge.mapping.translate import _condition_tests

    cond = (tm.where or {}).get(col)
    return cond is not None and not all(test(None) for test in _condition_tests(cond))


def _check_parent_key(report: CheckReport, agg: AggregateMapping, child: ChildMapping, base: tuple,
                      t: _Table, root: _Table) -> None:
    for child_col, root_col in zip(child.parent_key, agg.root.id):
        c, r = t.columns.get(child_col), root.columns.get(root_col)
        if c is None or r is None:
            continue  # reported as unknown columns
        if c.data_type != r.data_type or c.unsigned != r.unsigned:
            report.add("error", "schema", f"parent key {child.table}.{child_col} is {c.describe()} but the root id "
                       f"{agg.root.table}.{root_col} is {r.describe()}: ids are matched as text, so values of "
                       "different types may not meet (e.g. 42 vs '42.00', or out of range); use the same type",
                       agg.aggregate, base + ("parent_key", child_col))


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m cdc_bridge.mapping.check",
        description="Validate the mappings (offline), and with --db-host also against the live database: "
                    "tables, columns, keys, binlog settings and replication privileges. Prints what will be "
                    "captured. Exit 0 all well, 1 mapping errors, 2 schema errors, 3 server errors.")
    p.add_argument("--mappings", "-m", default="mappings", metavar="DIR", help="mappings directory (default: mappings)")
    p.add_argument("--db-host", help="database host for the live check (none: offline check only)")
    p.add_argument("--db-port", type=int, default=3306)
    p.add_argument("--db-user", default="root")
    p.add_argument("--db-password", default=None,
                   help="default: the CDC_BRIDGE__SOURCE__PASSWORD environment variable")
    p.add_argument("--strict", action="store_true", help="warnings fail the check too")
    args = p.parse_args(argv)
    if args.db_host:
        password = args.db_password if args.db_password is not None else os.environ.get(
            "CDC_BRIDGE__SOURCE__PASSWORD", "")
        report = check_live(args.mappings, {"host": args.db_host, "port": args.db_port, "user": args.db_user,
                                            "password": password}, strict=args.strict)
    else:
        report = check_offline(args.mappings)
        report.strict = args.strict
    print(report.render())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
