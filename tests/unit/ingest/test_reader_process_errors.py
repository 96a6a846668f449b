"""_rebuild_error: an exception raised in the reader process, re-raised in the bridge.

The child sends {"module", "qualname", "message"} (pickled); the parent must raise the same
SourceError class (exit codes and `except PositionPurgedError` keep working) even though the
classes' __init__ take other arguments than the message, and anything else as a plain
SourceError that still names the original class.
"""

from __future__ import annotations

import pickle

import pymysql
import pytest

from cdc_bridge.source.errors import (BinlogDisabledError, BinlogSettingsError, MissingPrivilegesError,
                                      PositionPurgedError, ServerIdConflictError, SourceError,
                                      SourceUnavailableError)
from cdc_bridge.ingest.reader_process import ReaderProcessError, _rebuild_error


class KeywordOnlyError(SourceError):
    """A subclass defined outside cdc_bridge, with a keyword-only __init__ and its own exit code."""

    exit_code = 89

    def __init__(self, *, table: str, count: int) -> None:
        super().__init__(f"{count} rows of {table} could not be decoded")
        self.table = table


def as_sent(e: BaseException) -> dict:
    """What the child sends for `e` (as in process._child_main), through a pickle round trip."""
    info = {"module": type(e).__module__, "qualname": type(e).__qualname__, "message": str(e)}
    return pickle.loads(pickle.dumps(info, protocol=pickle.HIGHEST_PROTOCOL))


SOURCE_ERRORS = [
    SourceError("an undecodable row in shop.orders"),
    BinlogDisabledError("cdc@db1:3306"),
    BinlogSettingsError("binlog_row_image", "MINIMAL", "FULL"),
    BinlogSettingsError("binlog_row_metadata", None, "FULL"),
    MissingPrivilegesError("cdc", ["REPLICATION SLAVE"], "GRANT REPLICATION SLAVE ON *.* TO 'cdc'@'%'",
                           detail="Access denied"),
    ServerIdConflictError(8123, detail="SHOW SLAVE HOSTS lists a replica with this server_id"),
    PositionPurgedError("0-1-42 (mysql-bin.000003:1234)", detail="server said: Could not find GTID (1236)"),
    SourceUnavailableError("cdc@db1:3306", 5, "Connection refused (2003)"),
    ReaderProcessError("the binlog reader process ended unexpectedly (exit status -9)"),
    KeywordOnlyError(table="shop.orders", count=3),
]


@pytest.mark.parametrize("original", SOURCE_ERRORS, ids=lambda e: type(e).__name__)
def test_source_errors_keep_class_message_and_exit_code(original):
    rebuilt = _rebuild_error(as_sent(original))
    assert type(rebuilt) is type(original)
    assert str(rebuilt) == str(original) and rebuilt.message == original.message
    assert rebuilt.exit_code == original.exit_code
    assert rebuilt.args == (str(original),)
    with pytest.raises(type(original)):  # raisable, and caught by the original class
        raise rebuilt


def test_exit_codes_survive_for_every_documented_error():
    codes = {type(e).__name__: _rebuild_error(as_sent(e)).exit_code for e in SOURCE_ERRORS}
    assert codes == {"SourceError": 80, "BinlogDisabledError": 81, "BinlogSettingsError": 82,
                     "MissingPrivilegesError": 83, "ServerIdConflictError": 84, "PositionPurgedError": 85,
                     "SourceUnavailableError": 86, "ReaderProcessError": 80, "KeywordOnlyError": 89}


@pytest.mark.parametrize("original", [
    ValueError("invalid literal for int() with base 10: 'x'"),
    KeyError("shop.orders"),
    pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
    MemoryError(),
], ids=lambda e: type(e).__name__)
def test_other_exceptions_become_source_error_naming_the_class(original):
    rebuilt = _rebuild_error(as_sent(original))
    assert type(rebuilt) is SourceError and rebuilt.exit_code == 80
    assert f"binlog reader process: {type(original).__qualname__}: {original}" == str(rebuilt)


@pytest.mark.parametrize("module, qualname", [
    ("cdc_bridge.no_such_module", "PositionPurgedError"),   # module does not import
    ("cdc_bridge.source.errors", "NoSuchError"),            # no such attribute
    ("cdc_bridge.source.errors", "annotations"),            # not a class
    ("builtins", "int"),                                    # a class, but not an exception
    ("cdc_bridge.source.binlog", "_StreamLost"),            # an internal, non-SourceError exception
])
def test_unresolvable_or_foreign_classes_become_source_error(module, qualname):
    rebuilt = _rebuild_error({"module": module, "qualname": qualname, "message": "it broke"})
    assert type(rebuilt) is SourceError and rebuilt.exit_code == 80
    assert str(rebuilt) == f"binlog reader process: {qualname}: it broke"
