"""SourceSettings validation and the errors' exit codes and messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cdc_bridge.source import errors as E
from cdc_bridge.source.settings import SourceSettings


def test_defaults_and_secret_password():
    s = SourceSettings(host="db", user="cdc", password="s3cret")
    assert (s.port, s.server_id, s.flavor, s.heartbeat_seconds, s.read_timeout_seconds) == (3306, 8123, "auto", 1.0, 10)
    assert (s.reconnect_initial_backoff, s.reconnect_max_backoff, s.connect_timeout) == (0.5, 30, 10)
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())
    assert s.connection_kwargs()["password"] == "s3cret"
    assert s.connection_kwargs()["read_timeout"] == 10
    assert s.describe() == "cdc@db:3306"


def test_read_timeout_must_exceed_heartbeat():
    with pytest.raises(ValidationError, match="read_timeout_seconds"):
        SourceSettings(host="db", user="u", heartbeat_seconds=5, read_timeout_seconds=5)
    SourceSettings(host="db", user="u", heartbeat_seconds=5, read_timeout_seconds=5.5)


def test_invalid_values_rejected():
    for bad in ({"flavor": "postgres"}, {"server_id": 0}, {"port": 70000}, {"unknown": 1},
                {"reconnect_initial_backoff": 5, "reconnect_max_backoff": 1}):
        with pytest.raises(ValidationError):
            SourceSettings(host="db", user="u", **bad)


def test_exit_codes_distinct_and_documented():
    classes = [E.SourceError, E.BinlogDisabledError, E.BinlogSettingsError, E.MissingPrivilegesError,
               E.ServerIdConflictError, E.PositionPurgedError, E.SourceUnavailableError]
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes)
    assert all(issubclass(c, E.SourceError) for c in classes)
    doc = E.__doc__
    for c in classes:
        assert f"{c.exit_code}    {c.__name__}" in doc


def test_messages_say_what_and_what_to_do():
    m = str(E.BinlogSettingsError("binlog_row_image", "MINIMAL", "FULL"))
    assert "binlog_row_image is 'MINIMAL'" in m and "binlog_row_image = FULL" in m and "my.cnf" in m
    m = str(E.MissingPrivilegesError("cdc@%", ["REPLICATION SLAVE"], "GRANT REPLICATION SLAVE ON *.* TO 'cdc'@'%';"))
    assert "REPLICATION SLAVE" in m and "GRANT REPLICATION SLAVE ON *.* TO 'cdc'@'%';" in m
    m = str(E.ServerIdConflictError(8123))
    assert "8123" in m and "source.server_id" in m
    m = str(E.PositionPurgedError("0-1-5 (mysql-bin.000001:4)"))
    assert "0-1-5" in m and "cdc-bridge snapshot" in m and "when_needed" in m
    m = str(E.SourceUnavailableError("cdc@db:3306", 3, "Connection refused"))
    assert "3 attempt" in m and "Connection refused" in m
    m = str(E.BinlogDisabledError("cdc@db:3306"))
    assert "log_bin" in m
