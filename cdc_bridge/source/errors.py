"""Errors of the binlog source. Each message says what is wrong and what to do.

Every error carries `exit_code`, the process exit status the command line uses when
the error stops the daemon. The source owns the range 80-89 so operators (and
supervisors) can tell a source problem from a sink (sysexits 65-78) or mapping (1) one:

    code  error                    meaning
    80    SourceError              other source failure (unexpected event, undecodable row)
    81    BinlogDisabledError      the server does not write a binlog (log_bin=OFF)
    82    BinlogSettingsError      binlog_format / binlog_row_image / binlog_row_metadata wrong
    83    MissingPrivilegesError   the user lacks REPLICATION SLAVE / REPLICATION CLIENT
    84    ServerIdConflictError    another replica uses our source.server_id
    85    PositionPurgedError      the saved position is no longer in the server's binlogs
    86    SourceUnavailableError   cannot connect, and the caller's retry budget is spent

The same table is in docs/source.md. Configuration errors (81-85) are never retried:
retrying cannot fix them and would only hide them.
"""

from __future__ import annotations


class SourceError(Exception):
    """Base of the source's errors. str(e) is the actionable message."""

    exit_code: int = 80

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BinlogDisabledError(SourceError):
    """The server runs without a binary log: there is nothing to tail."""

    exit_code = 81

    def __init__(self, server: str) -> None:
        super().__init__(
            f"the binary log is disabled on {server} (log_bin=OFF): cdc-bridge reads row changes "
            f"from the binlog. Enable it in my.cnf under [mysqld] with `log_bin = mysql-bin` "
            f"(plus `server_id = <unique id>`) and restart the server.")
        self.server = server


class BinlogSettingsError(SourceError):
    """A binlog variable has a value that hides row changes or column names from us."""

    exit_code = 82

    def __init__(self, variable: str, current: str | None, required: str) -> None:
        shown = "not set (server too old?)" if current is None else repr(current)
        super().__init__(
            f"{variable} is {shown} but cdc-bridge needs {variable}={required}. "
            f"Set `{variable} = {required}` in my.cnf under [mysqld] (and "
            f"`SET GLOBAL {variable} = '{required}'` to apply it without a restart; sessions "
            f"already open keep the old value until they reconnect).")
        self.variable = variable
        self.current = current
        self.required = required


class MissingPrivilegesError(SourceError):
    """The user cannot read the binlog or its status."""

    exit_code = 83

    def __init__(self, user: str, missing: list[str], grant: str, detail: str = "") -> None:
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"user {user} lacks {', '.join(missing)}{why}, needed to read the binlog. "
            f"As an admin, run: {grant}")
        self.user = user
        self.missing = missing
        self.grant = grant


class ServerIdConflictError(SourceError):
    """Another replica (or another cdc-bridge) is connected with our server_id."""

    exit_code = 84

    def __init__(self, server_id: int, detail: str = "") -> None:
        why = f" Server said: {detail}" if detail else ""
        super().__init__(
            f"server_id {server_id} is already used by another replica of this server (each "
            f"replica must present a unique id, or the server disconnects one of them). Set a "
            f"unique source.server_id in the bridge config (any number not used by a replica, "
            f"see SHOW SLAVE HOSTS / SHOW REPLICAS, nor by the server itself).{why}")
        self.server_id = server_id


class PositionPurgedError(SourceError):
    """The position we must resume from is no longer in the server's binlogs."""

    exit_code = 85

    def __init__(self, position: str, detail: str = "") -> None:
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"the saved source position {position} is no longer available on the server{why}: "
            f"the binlog files holding the changes after it were purged (or the server was "
            f"replaced), so changes made since then cannot be read. Take a new snapshot: run "
            f"`cdc-bridge snapshot`, or start with snapshot mode `when_needed`. To avoid this, "
            f"keep binlogs longer (binlog_expire_logs_seconds / expire_logs_days) than the "
            f"bridge may be down.")
        self.position = position


class SourceUnavailableError(SourceError):
    """The server could not be reached within the retry budget the caller asked for."""

    exit_code = 86

    def __init__(self, server: str, attempts: int, reason: str) -> None:
        super().__init__(
            f"cannot connect to {server} after {attempts} attempt(s): {reason}. Check that the "
            f"server is up and reachable from here (host, port, firewall) and that "
            f"source.user/source.password are right.")
        self.server = server
        self.attempts = attempts
        self.reason = reason
