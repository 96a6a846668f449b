"""Preflight decisions that need no server: binlog variables, grants, server error mapping."""

from __future__ import annotations

import pymysql
import pytest

from cdc_bridge.source.binlog import BinlogSource, _query_kind, _StreamLost
from cdc_bridge.source.errors import (BinlogDisabledError, BinlogSettingsError, MissingPrivilegesError,
                                      PositionPurgedError, ServerIdConflictError)
from cdc_bridge.source.preflight import (detect_flavor, grant_statement, missing_replication_privileges,
                                         validate_binlog_variables)
from cdc_bridge.source.settings import SourceSettings

GOOD = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}


def test_good_variables_pass():
    validate_binlog_variables("mariadb", dict(GOOD))
    validate_binlog_variables("mysql", dict(GOOD, binlog_row_value_options=""))


def test_binlog_off():
    with pytest.raises(BinlogDisabledError):
        validate_binlog_variables("mariadb", dict(GOOD, log_bin="OFF"))


@pytest.mark.parametrize("name,value", [("binlog_format", "MIXED"), ("binlog_row_image", "MINIMAL"),
                                        ("binlog_row_metadata", "MINIMAL"), ("binlog_row_metadata", None)])
def test_wrong_binlog_settings_name_variable_and_fix(name, value):
    with pytest.raises(BinlogSettingsError) as exc:
        validate_binlog_variables("mariadb", dict(GOOD, **{name: value}))
    assert exc.value.variable == name and exc.value.exit_code == 82
    assert f"{name} = {exc.value.required}" in str(exc.value)


def test_mysql_partial_json_refused():
    with pytest.raises(BinlogSettingsError, match="binlog_row_value_options"):
        validate_binlog_variables("mysql", dict(GOOD, binlog_row_value_options="PARTIAL_JSON"))


@pytest.mark.parametrize("flavor,name", [("mariadb", "log_bin_compress"), ("mysql", "binlog_transaction_compression")])
def test_compressed_binlog_refused(flavor, name):
    # compressed events would be skipped as unknown by the binlog library: rows lost silently
    validate_binlog_variables(flavor, dict(GOOD, **{name: "OFF"}))
    with pytest.raises(BinlogSettingsError, match=name):
        validate_binlog_variables(flavor, dict(GOOD, **{name: "ON"}))


def test_flavor_and_grant_statement():
    assert detect_flavor("10.11.19-MariaDB-0+deb12u1-log") == "mariadb"
    assert detect_flavor("8.0.36") == "mysql"
    assert grant_statement("mariadb", "'cdc'@'%'") == "GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO 'cdc'@'%';"
    assert "REPLICATION CLIENT" in grant_statement("mysql", "'cdc'@'%'")


@pytest.mark.parametrize("grants,missing", [
    (["GRANT ALL PRIVILEGES ON *.* TO `cdc`@`%`"], []),
    (["GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `cdc`@`%`"], []),
    (["GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `cdc`@`%`"], []),
    (["GRANT SELECT ON *.* TO `cdc`@`%`"], ["REPLICATION SLAVE", "REPLICATION CLIENT"]),
    (["GRANT USAGE ON *.* TO `cdc`@`%`", "GRANT ALL PRIVILEGES ON `shop`.* TO `cdc`@`%`"],
     ["REPLICATION SLAVE", "REPLICATION CLIENT"]),
    (["GRANT BINLOG MONITOR ON *.* TO `cdc`@`%`"], ["REPLICATION SLAVE"]),
    (["GRANT USAGE ON *.* TO `cdc`@`%`", "GRANT `replicator` TO `cdc`@`%`"], None),  # roles: cannot tell
])
def test_missing_replication_privileges(grants, missing):
    assert missing_replication_privileges(grants) == missing


@pytest.mark.parametrize("query,kind", [
    ("BEGIN", "begin"), ("XA START 'x'", "begin"), ("COMMIT", "commit"), ("ROLLBACK", "rollback"),
    ("ROLLBACK TO SAVEPOINT a", "other"), ("SAVEPOINT a", "other"),
    ("ALTER TABLE t ADD c INT", "ddl"), ("  create table x (a int)", "ddl"),
    ("/* generated */ DROP TABLE `t`", "ddl"), ("RENAME TABLE a TO b", "ddl"), ("TRUNCATE t", "ddl"),
    ("INSERT INTO t VALUES (1)", "other"),
])
def test_query_kind(query, kind):
    assert _query_kind(query) == kind


def _source() -> BinlogSource:
    return BinlogSource(SourceSettings(host="db", user="cdc", server_id=4321), {"s.t": None})


@pytest.mark.parametrize("error,cls", [
    (pymysql.err.OperationalError(4052, "A slave with the same server_uuid/server_id is already connected"),
     ServerIdConflictError),
    (pymysql.err.OperationalError(1236, "A slave with the same server_uuid/server_id as this slave has connected "
                                        "to the master"), ServerIdConflictError),
    (pymysql.err.OperationalError(1236, "Could not find GTID state requested by slave in any binlog files. "
                                        "Probably the slave state is too old and required binlog files have "
                                        "been purged."), PositionPurgedError),
    (pymysql.err.OperationalError(1236, "Could not find first log file name in binary log index file"),
     PositionPurgedError),
    (pymysql.err.OperationalError(1227, "Access denied; you need (at least one of) the REPLICATION SLAVE "
                                        "privilege(s) for this operation"), MissingPrivilegesError),
])
def test_fatal_server_errors_map_to_source_errors(error, cls):
    mapped = _source()._fatal_error(_StreamLost(error))
    assert isinstance(mapped, cls)
    assert error.args[1] in str(mapped)


@pytest.mark.parametrize("error", [
    pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query (timed out)"),
    pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db' ([Errno 111] Connection refused)"),
    pymysql.err.OperationalError(1927, "Connection was killed"),
    pymysql.err.OperationalError(1053, "Server shutdown in progress"),
    ConnectionResetError(104, "Connection reset by peer"),
])
def test_connection_trouble_is_retried(error):
    assert _source()._fatal_error(_StreamLost(error)) is None


def test_tables_must_be_qualified():
    with pytest.raises(ValueError, match="schema.table"):
        BinlogSource(SourceSettings(host="db", user="cdc"), {"orders": None})
