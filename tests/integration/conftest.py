"""Fixtures for tests against the real MariaDB and Kafka started by devenv.

Services are started once per session and left running, so re-runs are fast;
CI runs `python -m devenv down` after pytest.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

# devenv is a repo-root package, not installed into the venv: make it importable
# however pytest was launched (.venv/bin/pytest does not put the cwd on sys.path).
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import devenv.__main__ as devenv_cli  # noqa: E402
from devenv import kafka, mariadb  # noqa: E402

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    # this hook sees the whole session's items: mark only those under tests/integration
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services():
    """Both services up (reused when already running); not stopped at the end."""
    devenv_cli.up(["mariadb", "kafka"])


@pytest.fixture
def mysql_settings(services) -> dict:
    """dict(host, port, user, password) of the throwaway MariaDB: a fresh dict per test, because
    pymysqlreplication's BinLogStreamReader adds keys to the connection_settings it is given."""
    return mariadb.connection_settings()


@pytest.fixture(scope="session")
def kafka_bootstrap(services) -> str:
    return kafka.bootstrap_servers()


@pytest.fixture
def admin_db(services):
    """A pymysql connection with all privileges, autocommit on. One per test: the crash
    tests restart MariaDB, which would kill a session-wide connection."""
    conn = mariadb.admin_connect()
    yield conn
    conn.close()


@pytest.fixture
def fresh_db(services):
    """Name of a new empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    # own short connections, not admin_db: the test may mariadb.restart() in between
    with mariadb.admin_connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield name
    with mariadb.admin_connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")

# the shared bridge harness (tests/integration/bridge_harness.py) is imported by module name
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))


@pytest.fixture
def shop(fresh_db, tmp_path):
    """fresh_db with the example schema and an orders mapping pointed at it: (admin conn, db, events topic)."""
    import bridge_harness as h
    from devenv.monolith import create_schema

    conn = mariadb.admin_connect()
    create_schema(conn, fresh_db)
    topic = h.write_orders_mapping(tmp_path / "mappings", fresh_db)
    yield conn, fresh_db, topic
    conn.close()
