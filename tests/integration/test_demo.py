"""Issue 17: `make demo | cat`, then Ctrl-C, leaves nothing running and shows what it promises.

The demo runs on its own MariaDB and Kafka (CDC_DEVENV_RUN_DIR and other ports), so that stopping
its services does not touch the ones the rest of the suite uses.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_of_make_demo_into_a_pipe_stops_the_bridge_and_the_services(tmp_path):
    ports = {"CDC_TEST_MYSQL_PORT": _free_port(), "CDC_TEST_KAFKA_PORT": _free_port(),
             "CDC_TEST_KAFKA_CONTROLLER_PORT": _free_port(), "CDC_DEMO_HTTP_PORT": _free_port()}
    env = {**{k: v for k, v in os.environ.items() if k != "KEEP_SERVICES"},
           "CDC_DEVENV_RUN_DIR": str(tmp_path / "run"), **{k: str(v) for k, v in ports.items()}}
    # like a terminal: make, the demo and `cat` in one process group, which Ctrl-C signals at once
    proc = subprocess.Popen(["bash", "-c", "make -s demo 2>&1 | cat"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        wanted = ("CDC_BRIDGE__SOURCE__PASSWORD=", "check --config", "OrderPlaced", "CustomerRegistered",
                  "DEAD LETTER  reason=coercion_failed", "events,")
        while time.monotonic() < deadline and proc.poll() is None:
            text = "".join(lines)
            if all(w in text for w in wanted):
                break
            time.sleep(0.5)
        text = "".join(lines)
        missing = [w for w in wanted if w not in text]
        assert not missing, f"the demo did not show {missing}:\n{text[-4000:]}"
        assert "+2 lines" in text or "+1 lines" in text or "+3 lines" in text, text[-3000:]

        os.killpg(proc.pid, signal.SIGINT)   # Ctrl-C: `cat` dies at once, the demo's stdout is a closed pipe
        proc.wait(120)
        reader.join(10)
        run = tmp_path / "run"
        for pid_file in (run / "mariadb.pid", run / "kafka.pid"):
            assert not pid_file.exists(), f"{pid_file.name} left behind: the service was not stopped"
        for name in ("CDC_TEST_MYSQL_PORT", "CDC_TEST_KAFKA_PORT", "CDC_DEMO_HTTP_PORT"):
            assert not _listening(ports[name]), f"something still listens on {name}={ports[name]}"
        bridge_log = (run / "demo" / "bridge.log").read_text()
        assert '"bridge stopped"' in bridge_log or "bridge stopped" in bridge_log, bridge_log[-2000:]
        assert "Traceback" not in "".join(lines), "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "devenv", "down"], cwd=ROOT, env=env,
                       capture_output=True, timeout=120)
