"""Dev/test service manager: a throwaway MariaDB and a real Apache Kafka.

Both services are started by the project's own code, so a developer machine,
``make demo`` and CI all run against the same real servers without Docker:

    python -m devenv up [mariadb|kafka]   # start (idempotent: reuses a running, answering server)
    python -m devenv status               # state + address of each; exit 0 only if both answer
    python -m devenv logs [mariadb|kafka] # tail of the service logs
    python -m devenv down [mariadb|kafka] # clean stop (SIGTERM, SIGKILL after 30 s)

``scripts/services`` is the same thing via the repo's venv.

Everything lives under the repo root (computed from this file, so any clone works):
  .run/    state of the running servers (datadirs, pid files, logs); delete it to start from scratch
           (CDC_DEVENV_RUN_DIR puts it elsewhere: a second set of servers, with other ports)
  .cache/  downloaded Kafka jars (kept across ``down``/``up``)

Addresses: MariaDB on 127.0.0.1:33306 (env CDC_TEST_MYSQL_PORT), user/password cdc/cdc;
Kafka on 127.0.0.1:39092 (env CDC_TEST_KAFKA_PORT), KRaft controller on 39093
(env CDC_TEST_KAFKA_CONTROLLER_PORT).  From Python:

    from devenv import mariadb, kafka
    mariadb.connection_settings()   # dict(host, port, user, password) for pymysql / BinLogStreamReader
    mariadb.admin_connect("db")     # pymysql connection, autocommit on
    kafka.bootstrap_servers()       # "127.0.0.1:39092"
    mariadb.restart(); kafka.restart(kill=True)   # for crash/restart tests; data is kept

This module holds the small process helpers shared by both services.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# CDC_DEVENV_RUN_DIR: another set of servers (with other CDC_TEST_* ports) beside the usual one
RUN_DIR = Path(os.environ["CDC_DEVENV_RUN_DIR"]) if os.environ.get("CDC_DEVENV_RUN_DIR") else ROOT / ".run"
CACHE_DIR = ROOT / ".cache"


class ServiceError(RuntimeError):
    """A service could not be started/stopped; the message says why (incl. a log tail)."""


def log(msg: str) -> None:
    # stderr, so `status` output on stdout stays machine-readable
    try:
        print(f"[devenv] {msg}", file=sys.stderr, flush=True)
    except OSError:   # stderr is a closed pipe (`make demo 2>&1 | tee`, then Ctrl-C): go on stopping
        pass


@contextlib.contextmanager
def lock():
    """Serialize up/down across processes (e.g. parallel pytest workers calling up at once)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "devenv.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_apt_updated = False


def apt_install(*packages: str) -> None:
    """Install Debian packages (CI runs as root on a machine that may lack them)."""
    global _apt_updated
    if os.geteuid() != 0:
        raise ServiceError(f"need {' '.join(packages)}; not root, install them with apt-get yourself")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        log("apt-get update")
        subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
        _apt_updated = True
    log(f"apt-get install {' '.join(packages)}")
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def find_binary(*names: str, extra_dirs=("/usr/sbin", "/usr/local/sbin")) -> str | None:
    # mariadbd lives in /usr/sbin, which a non-login PATH may lack
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(extra_dirs)
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def read_pid(pid_file: Path, cmd_marker: str) -> int | None:
    """Pid from pid_file if that process is alive and really is ours (guards against pid reuse)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    if cmd_marker not in cmdline or process_state(pid) in ("Z", "X"):  # zombie = exited
        return None
    return pid


def spawn(cmd: list[str], log_file: Path, pid_file: Path, env: dict | None = None) -> int:
    """Start a detached daemon: own session/process group, output appended to log_file.

    It must outlive the `python -m devenv up` that started it, and a Ctrl-C in the
    terminal (sent to the foreground process group) must not reach it.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, cwd=ROOT, env=env)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def alive(pid: int) -> bool:
    """True while any thread of the process runs (zombies count as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # zombie of a child of this very process (e.g. restart() inside pytest)
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return process_state(pid) not in ("Z", "X")


def process_state(pid: int) -> str:
    """Single-letter state from /proc (R, S, Z...); "X" when the process is gone.

    A multi-threaded process (the JVM) shows its main thread as a zombie while other
    threads still tear down and hold its sockets: it only counts as "Z" once all are.
    """
    states = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            states.append(Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()[0])
    except (OSError, IndexError):
        pass
    if not states:
        return "X"
    alive_states = [st for st in states if st not in ("Z", "X")]
    return alive_states[0] if alive_states else "Z"


def terminate(pid: int, name: str, timeout: float = 30.0, kill: bool = False) -> None:
    """SIGTERM the daemon's process group (clean shutdown), SIGKILL after `timeout`.

    kill=True sends SIGKILL straight away: a crash, for recovery tests.
    """
    sig = signal.SIGKILL if kill else signal.SIGTERM
    try:
        os.killpg(pid, sig)  # pgid == pid: spawn() made it a session leader
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            log(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s, sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.1)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 50) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} does not exist)"


def env_port(var: str, default: int) -> int:
    value = os.environ.get(var)
    return int(value) if value else default
