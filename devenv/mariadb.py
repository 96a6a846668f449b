"""Throwaway MariaDB with a ROW/FULL binlog and GTIDs, as cdc-bridge expects from production.

Datadir .run/mariadb, socket .run/mariadb.sock, log .run/mariadb.log, TCP 127.0.0.1:33306
(env CDC_TEST_MYSQL_PORT). User cdc/cdc has every privilege incl. replication.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pymysql

from devenv import (RUN_DIR, ServiceError, alive, apt_install, env_port, find_binary, log,
                    port_open, read_pid, spawn, tail, terminate)

HOST = "127.0.0.1"
USER = "cdc"
PASSWORD = "cdc"
START_TIMEOUT = 60.0

DATADIR = RUN_DIR / "mariadb"
SOCKET = RUN_DIR / "mariadb.sock"
PID_FILE = RUN_DIR / "mariadb.pid"
LOG_FILE = RUN_DIR / "mariadb.log"
CONFIG = RUN_DIR / "mariadb.cnf"
# written only after mariadb-install-db succeeded: a half-initialized datadir is wiped and redone
INIT_MARKER = RUN_DIR / "mariadb.initialized"


def port() -> int:
    return env_port("CDC_TEST_MYSQL_PORT", 33306)


def connection_settings() -> dict:
    """Keyword arguments for pymysql.connect / BinLogStreamReader(connection_settings=...)."""
    return {"host": HOST, "port": port(), "user": USER, "password": PASSWORD}


def admin_connect(database: str | None = None) -> pymysql.connections.Connection:
    """A pymysql connection as cdc (all privileges), autocommit on, utf8mb4."""
    return pymysql.connect(**connection_settings(), database=database, autocommit=True,
                           charset="utf8mb4", connect_timeout=5)


def pid() -> int | None:
    return read_pid(PID_FILE, "mariadbd") or read_pid(PID_FILE, "mysqld")


def answering() -> bool:
    """True if `SELECT 1` works over TCP as the cdc user."""
    # no bare port probe first: mariadbd logs every such connection as an "Aborted connection" warning
    try:
        with admin_connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)
    except pymysql.MySQLError:
        return False


def status() -> tuple[bool, str]:
    p = pid()
    if answering():
        return True, f"running (pid {p}), answering at {HOST}:{port()} user={USER} password={PASSWORD}"
    if p:
        return False, f"process {p} alive but not answering at {HOST}:{port()}"
    return False, "stopped"


def _server_binary() -> str:
    binary = find_binary("mariadbd", "mysqld")
    if binary is None:
        apt_install("mariadb-server")
        binary = find_binary("mariadbd", "mysqld")
    if binary is None:
        raise ServiceError("mariadb-server installed but no mariadbd/mysqld binary found")
    return binary


def _write_config() -> None:
    # Rewritten on every start so a changed port env var takes effect. A dedicated
    # --defaults-file keeps the machine's /etc/mysql config out of the picture.
    CONFIG.write_text(f"""\
[mysqld]
user = root
datadir = {DATADIR}
socket = {SOCKET}
# not PID_FILE: spawn() writes that one, and mariadbd truncates+rewrites its own at startup
pid-file = {DATADIR / "mariadbd.pid"}
port = {port()}
bind-address = {HOST}
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_unicode_ci

# what cdc-bridge needs from a source server
server_id = 1
log_bin = mysql-bin
binlog_format = ROW
binlog_row_image = FULL
binlog_row_metadata = FULL
gtid_strict_mode = ON
log_slave_updates
# tests replay from old GTIDs: never purge binlogs
binlog_expire_logs_seconds = 0

# throwaway instance: small and fast, durability is not the point
innodb_buffer_pool_size = 128M
innodb_log_file_size = 48M
innodb_flush_log_at_trx_commit = 2
sync_binlog = 0
performance_schema = OFF
max_connections = 200
""")


def _initialize() -> None:
    if INIT_MARKER.exists() and (DATADIR / "mysql").is_dir():
        return
    shutil.rmtree(DATADIR, ignore_errors=True)
    DATADIR.mkdir(parents=True)
    install_db = find_binary("mariadb-install-db", "mysql_install_db")
    if install_db is None:
        raise ServiceError("mariadb-install-db not found (is mariadb-server installed?)")
    log(f"initializing {DATADIR}")
    res = subprocess.run(
        [install_db, f"--defaults-file={CONFIG}", "--auth-root-authentication-method=normal",
         f"--datadir={DATADIR}", "--user=root", "--skip-test-db"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        raise ServiceError(f"mariadb-install-db failed:\n{res.stdout[-4000:]}")
    INIT_MARKER.write_text("ok\n")


def _create_users() -> None:
    # root has no password (auth method "normal") and is reached over the unix socket,
    # which works before the cdc user exists.
    conn = pymysql.connect(unix_socket=str(SOCKET), user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            # keep admin statements out of the binlog: tests replaying it see only their own rows
            cur.execute("SET SESSION sql_log_bin = 0")
            for host in ("%", "127.0.0.1", "localhost"):
                cur.execute(f"CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}'")
                # ALL includes REPLICATION SLAVE/CLIENT and BINLOG MONITOR, needed to tail the binlog
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}' WITH GRANT OPTION")
    finally:
        conn.close()


def _wait_ready(server_pid: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive(server_pid):
            raise ServiceError(f"mariadbd (pid {server_pid}) exited during startup; "
                               f"last lines of {LOG_FILE}:\n{tail(LOG_FILE)}")
        try:
            _create_users()
            if answering():
                return
        except pymysql.MySQLError:
            pass
        time.sleep(0.25)
    raise ServiceError(f"MariaDB not answering at {HOST}:{port()} after {START_TIMEOUT:.0f}s; "
                       f"last lines of {LOG_FILE}:\n{tail(LOG_FILE)}")


def start() -> None:
    """Start (or reuse) the server and wait until it answers; raises ServiceError on failure."""
    running = pid()
    if running:
        log(f"mariadb already running (pid {running}), waiting until it answers")
        _wait_ready(running)
        return
    if port_open(HOST, port()):
        raise ServiceError(f"port {port()} is taken by a process that is not this checkout's "
                           f"MariaDB; stop it or set CDC_TEST_MYSQL_PORT")
    binary = _server_binary()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    _write_config()
    _initialize()
    SOCKET.unlink(missing_ok=True)  # stale after a SIGKILL
    t0 = time.monotonic()
    # --defaults-file must be the first option
    server_pid = spawn([binary, f"--defaults-file={CONFIG}", "--user=root"], LOG_FILE, PID_FILE)
    _wait_ready(server_pid)
    log(f"mariadb up at {HOST}:{port()} (pid {server_pid}, {time.monotonic() - t0:.1f}s)")


def stop(kill: bool = False) -> None:
    """Clean shutdown (SIGTERM, SIGKILL after 30 s); kill=True simulates a crash. Data is kept."""
    running = pid()
    if running:
        log(f"stopping mariadb (pid {running}){' with SIGKILL' if kill else ''}")
        terminate(running, "mariadb", kill=kill)
    PID_FILE.unlink(missing_ok=True)


def restart(kill: bool = False) -> None:
    stop(kill=kill)
    start()
