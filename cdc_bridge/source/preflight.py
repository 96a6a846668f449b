"""Checks before streaming: is this server usable as a source, and where is it now?

`check_server()` fails fast with an actionable error (see errors.py) for everything a
retry cannot fix: no binlog, wrong binlog settings, missing privileges, a server_id
clash, a purged resume position. Only "cannot connect" is retried, and only when the
caller asks for more than one attempt.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import pymysql
import structlog

from cdc_bridge.source.errors import (BinlogDisabledError, BinlogSettingsError, MissingPrivilegesError,
                                      PositionPurgedError, ServerIdConflictError, SourceError,
                                      SourceUnavailableError)
from cdc_bridge.source.gtid import mariadb_position_available, mysql_gtid_subset
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.settings import SourceSettings

log = structlog.get_logger(__name__)

Flavor = Literal["mariadb", "mysql"]

# server error codes
ER_ACCESS_DENIED = 1045            # wrong user/password
ER_SPECIFIC_ACCESS_DENIED = 1227   # "you need (at least one of) the X privilege(s)"
ER_PARSE_ERROR = 1064
ER_UNKNOWN_SYSTEM_VARIABLE = 1193

REQUIRED = {"binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}


@dataclass(frozen=True)
class ServerInfo:
    """What preflight learned about the source server."""

    flavor: Flavor
    version: str
    server_id: int
    server_uuid: str | None            # MySQL only
    gtid_domain_id: int | None         # MariaDB only
    gtid_enabled: bool                 # positions carry GTIDs (MariaDB: always; MySQL: gtid_mode=ON)
    variables: dict[str, str | None]   # binlog settings as found
    position: SourcePosition           # the server's current position (end of its binlog)
    binlog_state: str | None = None    # MariaDB @@gtid_binlog_state / MySQL @@gtid_executed
    warnings: list[str] = field(default_factory=list)


def connect(settings: SourceSettings, **extra: Any) -> pymysql.connections.Connection:
    """An autocommit PyMySQL connection to the source (no database selected)."""
    return pymysql.connect(**settings.connection_kwargs(autocommit=True, **extra))


def detect_flavor(version: str) -> Flavor:
    return "mariadb" if "mariadb" in version.lower() else "mysql"


def _query(conn: Any, sql: str, args: Any = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _query_one(conn: Any, sql: str, args: Any = None) -> tuple | None:
    rows = _query(conn, sql, args)
    return rows[0] if rows else None


def _global_var(conn: Any, name: str) -> str | None:
    row = _query_one(conn, "SHOW GLOBAL VARIABLES LIKE %s", (name,))
    return None if row is None else str(row[1])


def _binlog_status(conn: Any, flavor: Flavor) -> tuple | None:
    """(File, Position, ...) of the binlog being written, None if the binlog is off."""
    if flavor == "mysql":
        # SHOW MASTER STATUS is gone in MySQL 8.4; SHOW BINARY LOG STATUS exists since 8.2
        try:
            return _query_one(conn, "SHOW BINARY LOG STATUS")
        except pymysql.err.ProgrammingError as e:
            if e.args[0] != ER_PARSE_ERROR:
                raise
    return _query_one(conn, "SHOW MASTER STATUS")


def current_position(conn: Any, flavor: Flavor | None = None) -> SourcePosition:
    """The server's current binlog end as a SourcePosition (file + offset + GTID state).

    MariaDB: gtid = @@gtid_binlog_pos. MySQL: gtid = @@gtid_executed (None when gtid_mode
    is OFF). Status and GTID are read until they agree, so a commit in between cannot
    pair a GTID with the wrong offset.
    """
    if flavor is None:
        flavor = detect_flavor(str(_query_one(conn, "SELECT VERSION()")[0]))
    gtid_on = True
    if flavor == "mysql":
        gtid_on = (_global_var(conn, "gtid_mode") or "OFF").upper() == "ON"
    for _ in range(20):
        before = _binlog_status(conn, flavor)
        if before is None:
            raise BinlogDisabledError("the source server")
        gtid = None
        if flavor == "mariadb":
            gtid = str(_query_one(conn, "SELECT @@GLOBAL.gtid_binlog_pos")[0] or "")
        elif gtid_on:
            gtid = str(_query_one(conn, "SELECT @@GLOBAL.gtid_executed")[0] or "").replace("\n", "")
        after = _binlog_status(conn, flavor)
        if after is not None and tuple(after[:2]) == tuple(before[:2]):
            return SourcePosition(gtid=gtid, binlog_file=str(after[0]), binlog_pos=int(after[1]))
    raise SourceError("the source server's binlog position kept moving while being read (20 tries); "
                      "retry, this should not persist")


def binlog_files(conn: Any) -> list[tuple[str, int]]:
    """SHOW BINARY LOGS as (file name, size), oldest first."""
    return [(str(r[0]), int(r[1])) for r in _query(conn, "SHOW BINARY LOGS")]


def first_binlog_gtid_list(conn: Any, files: list[tuple[str, int]] | None = None) -> str | None:
    """MariaDB: the Gtid_list event of the oldest binlog file, e.g. '0-1-10' ('' if empty)."""
    files = files if files is not None else binlog_files(conn)
    if not files:
        return None
    with conn.cursor() as cur:
        cur.execute("SHOW BINLOG EVENTS IN %s LIMIT 5", (files[0][0],))
        cols = [d[0].lower() for d in cur.description]
        for row in cur.fetchall():
            rec = dict(zip(cols, row))
            if str(rec.get("event_type", "")).lower() == "gtid_list":
                info = str(rec.get("info", ""))
                return info.strip().strip("[]").replace(" ", "")
    return None


def position_available(conn: Any, pos: SourcePosition, flavor: Flavor | None = None) -> bool:
    """Can the server still stream everything after `pos`?

    MariaDB + GTID: every domain of pos.gtid must be within [start of the oldest binlog
    file, what the server has written] (see gtid.mariadb_position_available).
    MySQL + GTID: @@gtid_purged must be a subset of pos.gtid (we executed all that is gone),
    and pos.gtid a subset of @@gtid_executed (we are not ahead of the server).
    File + offset: the file is still listed by SHOW BINARY LOGS and long enough.
    """
    if flavor is None:
        flavor = detect_flavor(str(_query_one(conn, "SELECT VERSION()")[0]))
    files = binlog_files(conn)
    if flavor == "mariadb" and pos.gtid is not None:
        state = str(_query_one(conn, "SELECT @@GLOBAL.gtid_binlog_state")[0] or "")
        return mariadb_position_available(pos.gtid, first_binlog_gtid_list(conn, files), state)
    if flavor == "mysql" and pos.gtid is not None:
        purged = str(_query_one(conn, "SELECT @@GLOBAL.gtid_purged")[0] or "").replace("\n", "")
        executed = str(_query_one(conn, "SELECT @@GLOBAL.gtid_executed")[0] or "").replace("\n", "")
        return mysql_gtid_subset(purged, pos.gtid) and mysql_gtid_subset(pos.gtid, executed)
    sizes = dict(files)
    return pos.binlog_file in sizes and pos.binlog_pos <= sizes[pos.binlog_file]


def grant_statement(flavor: Flavor, user: str) -> str:
    """The GRANT an admin runs so `user` can tail the binlog and read table metadata."""
    who = user if "@" in user else f"'{user}'@'%'"
    if flavor == "mariadb":
        # BINLOG MONITOR is MariaDB 10.5's name for REPLICATION CLIENT (which it still accepts)
        return f"GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO {who};"
    return f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO {who};"


_GLOBAL_GRANT = re.compile(r"^GRANT (?P<privs>.+?) ON \*\.\* TO", re.IGNORECASE)
_ROLE_GRANT = re.compile(r"^GRANT [`'\"]?[^ ]+[`'\"]? TO", re.IGNORECASE)


def missing_replication_privileges(grants: list[str]) -> list[str] | None:
    """From SHOW GRANTS lines: the replication privileges the user clearly lacks.

    Returns [] when all are there, a list of names when some are missing, and None when
    the grants cannot tell (privileges through roles): then the server decides later.
    """
    have: set[str] = set()
    uses_roles = False
    for line in grants:
        m = _GLOBAL_GRANT.match(line.strip())
        if m:
            privs = m.group("privs").upper()
            if "ALL PRIVILEGES" in privs:
                return []
            have.update(p.strip() for p in privs.split(","))
        elif _ROLE_GRANT.match(line.strip()) and " ON " not in line.upper():
            uses_roles = True
    missing = []
    if not {"REPLICATION SLAVE", "REPLICATION REPLICA"} & have:
        missing.append("REPLICATION SLAVE")
    if not {"REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"} & have:
        missing.append("REPLICATION CLIENT")
    if missing and uses_roles:
        return None
    return missing


def validate_binlog_variables(flavor: Flavor, variables: dict[str, str | None]) -> None:
    """Raise the error for the first binlog variable that does not fit (pure: unit-tested)."""
    log_bin = (variables.get("log_bin") or "OFF").upper()
    if log_bin not in ("ON", "1"):
        raise BinlogDisabledError(variables.get("_server", "the source server") or "the source server")
    for name, required in REQUIRED.items():
        current = variables.get(name)
        if current is None or current.upper() != required:
            raise BinlogSettingsError(name, current, required)
    if flavor == "mysql":
        # PARTIAL_JSON writes JSON updates as diffs: we could not rebuild the after image
        opts = variables.get("binlog_row_value_options")
        if opts:
            raise BinlogSettingsError("binlog_row_value_options", opts, "''")
    # compressed events are types the binlog library skips as unknown: rows would be lost silently
    for name in ("log_bin_compress", "binlog_transaction_compression"):
        value = variables.get(name)
        if value is not None and value.upper() in ("ON", "1"):
            raise BinlogSettingsError(name, value, "OFF")


def inspect_server(conn: Any, settings: SourceSettings, *, check_replicas: bool = True) -> ServerInfo:
    """Everything check_server() verifies, on an open connection."""
    version = str(_query_one(conn, "SELECT VERSION()")[0])
    detected = detect_flavor(version)
    flavor: Flavor = detected if settings.flavor == "auto" else settings.flavor
    warnings: list[str] = []
    if flavor != detected:
        warnings.append(f"source.flavor is {flavor} but the server says VERSION()={version!r}")
    server = settings.describe()

    names = ("log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "server_id",
             "gtid_strict_mode", "gtid_domain_id", "gtid_mode", "server_uuid", "binlog_row_value_options",
             "binlog_checksum", "log_bin_compress", "binlog_transaction_compression")
    found = {str(r[0]).lower(): str(r[1]) for r in _query(
        conn, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({', '.join(['%s'] * len(names))})", names)}
    variables: dict[str, str | None] = {"_server": server, **{n: found.get(n) for n in names}}
    validate_binlog_variables(flavor, variables)
    variables.pop("_server")

    # privileges: REPLICATION CLIENT shows as failing SHOW MASTER STATUS, REPLICATION SLAVE only
    # in the grants (or when the dump is refused, which binlog.py maps to the same error)
    user = str(_query_one(conn, "SELECT CURRENT_USER()")[0])
    grant = grant_statement(flavor, _quote_user(user))
    try:
        position = current_position(conn, flavor)
    except pymysql.err.OperationalError as e:
        if e.args[0] == ER_SPECIFIC_ACCESS_DENIED:
            raise MissingPrivilegesError(user, ["REPLICATION CLIENT"], grant, detail=str(e.args[1])) from e
        raise
    grants = [str(r[0]) for r in _query(conn, "SHOW GRANTS")]
    missing = missing_replication_privileges(grants)
    if missing:
        raise MissingPrivilegesError(user, missing, grant)
    if missing is None:
        warnings.append("privileges come from roles; not checked before connecting")

    server_id = int(variables["server_id"] or 0)
    if server_id == settings.server_id:
        raise ServerIdConflictError(settings.server_id, detail=f"that is the source server's own server_id")
    if check_replicas:
        _check_replica_ids(conn, flavor, settings)

    binlog_state = None
    if flavor == "mariadb":
        binlog_state = str(_query_one(conn, "SELECT @@GLOBAL.gtid_binlog_state")[0] or "")
    elif position.gtid is not None:
        binlog_state = position.gtid
    return ServerInfo(
        flavor=flavor,
        version=version,
        server_id=server_id,
        server_uuid=variables.get("server_uuid") if flavor == "mysql" else None,
        gtid_domain_id=int(variables["gtid_domain_id"]) if flavor == "mariadb" and variables.get("gtid_domain_id") else None,
        gtid_enabled=position.gtid is not None,
        variables={k: v for k, v in variables.items() if v is not None},
        position=position,
        binlog_state=binlog_state,
        warnings=warnings,
    )


def _quote_user(current_user: str) -> str:
    name, _, host = current_user.rpartition("@")
    return f"'{name}'@'{host}'" if name else f"'{current_user}'@'%'"


def replica_server_ids(conn: Any, flavor: Flavor) -> set[int] | None:
    """server_ids of the replicas registered with the server; None if we may not look."""
    sqls = ["SHOW SLAVE HOSTS"] if flavor == "mariadb" else ["SHOW REPLICAS", "SHOW SLAVE HOSTS"]
    for sql in sqls:
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                cols = [d[0].lower() for d in cur.description]
                idx = cols.index("server_id")
                return {int(r[idx]) for r in cur.fetchall()}
        except pymysql.err.MySQLError as e:
            if e.args and e.args[0] in (ER_PARSE_ERROR, ER_SPECIFIC_ACCESS_DENIED):
                continue
            raise
    return None


def _check_replica_ids(conn: Any, flavor: Flavor, settings: SourceSettings) -> None:
    # A replica whose connection just died stays listed until the server notices, which
    # its next heartbeat write does; so look again for a few heartbeats before blaming
    # another replica (a bridge restarted right after a crash would otherwise refuse to start).
    deadline = time.monotonic() + max(3.0, 3 * settings.heartbeat_seconds)
    while True:
        ids = replica_server_ids(conn, flavor)
        if ids is None or settings.server_id not in ids:
            return
        if time.monotonic() >= deadline:
            raise ServerIdConflictError(settings.server_id,
                                        detail="SHOW SLAVE HOSTS lists a replica with this server_id")
        time.sleep(0.5)


def check_server(settings: SourceSettings, *, start: SourcePosition | None = None, attempts: int = 1,
                 check_replicas: bool = True) -> ServerInfo:
    """Connect, verify the server can be a source, and (given `start`) that it still has it.

    attempts: connection attempts before SourceUnavailableError (exponential backoff with
    jitter between them). Configuration errors are raised at once, never retried.
    """
    attempt = 0
    delay = settings.reconnect_initial_backoff
    while True:
        attempt += 1
        try:
            conn = connect(settings)
        except pymysql.err.MySQLError as e:
            reason = _reason(e)
            if attempt >= attempts:
                raise SourceUnavailableError(settings.describe(), attempt, reason) from e
            log.warning("source connect failed, retrying", attempt=attempt, reason=reason, retry_in=round(delay, 2))
            time.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, settings.reconnect_max_backoff)
            continue
        try:
            info = inspect_server(conn, settings, check_replicas=check_replicas)
            if start is not None and not position_available(conn, start, info.flavor):
                raise PositionPurgedError(str(start), detail=f"the server is at {info.position}")
            for w in info.warnings:
                log.warning("source preflight", warning=w)
            return info
        finally:
            conn.close()


def _reason(e: BaseException) -> str:
    if isinstance(e, pymysql.err.MySQLError) and len(e.args) >= 2:
        return f"{e.args[1]} ({e.args[0]})"
    return f"{type(e).__name__}: {e}"
