"""Real Apache Kafka (pinned version) as a single-node KRaft broker+controller on 127.0.0.1.

Jars come from Maven Central (devenv/kafka/pom.xml) into .cache/kafka-<version>/libs, once.
State: .run/kafka/{server.properties,cluster.id,data/,server.log,stdout.log}, pid .run/kafka.pid.
Broker 127.0.0.1:39092 (env CDC_TEST_KAFKA_PORT), controller 39093 (env CDC_TEST_KAFKA_CONTROLLER_PORT).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from devenv import (CACHE_DIR, RUN_DIR, ServiceError, alive, apt_install, env_port, find_binary,
                    log, port_open, read_pid, spawn, tail, terminate)

KAFKA_VERSION = "4.1.1"  # keep in sync with devenv/kafka/pom.xml
HOST = "127.0.0.1"
START_TIMEOUT = 90.0

ASSETS = Path(__file__).resolve().parent / "kafka"  # pom.xml + log4j2.xml (a data dir, not a package)
POM = ASSETS / "pom.xml"
LOG4J_CONFIG = ASSETS / "log4j2.xml"
DIST = CACHE_DIR / f"kafka-{KAFKA_VERSION}"
LIBS = DIST / "libs"
# holds the pom's hash, written after a complete copy: a partial or outdated download is redone
LIBS_MARKER = DIST / "libs.complete"

STATE = RUN_DIR / "kafka"
DATA = STATE / "data"
CONFIG = STATE / "server.properties"
CLUSTER_ID = STATE / "cluster.id"
SERVER_LOG = STATE / "server.log"
STDOUT_LOG = STATE / "stdout.log"
PID_FILE = RUN_DIR / "kafka.pid"


def port() -> int:
    return env_port("CDC_TEST_KAFKA_PORT", 39092)


def controller_port() -> int:
    return env_port("CDC_TEST_KAFKA_CONTROLLER_PORT", port() + 1)


def bootstrap_servers() -> str:
    return f"{HOST}:{port()}"


def pid() -> int | None:
    return read_pid(PID_FILE, "kafka.Kafka")


def answering(timeout: float = 5.0) -> bool:
    """True if the broker serves metadata (a plain open port is not enough: KRaft may still be electing)."""
    if not port_open(HOST, port()):
        return False
    from confluent_kafka.admin import AdminClient  # import late: `down`/`status` of mariadb need no librdkafka
    from confluent_kafka import KafkaException

    # log_level 0 mutes librdkafka's connection-refused chatter on stderr while the broker boots
    admin = AdminClient({"bootstrap.servers": bootstrap_servers(), "log_level": 0})
    try:
        md = admin.list_topics(timeout=timeout)
        return bool(md.brokers)
    except KafkaException:
        return False


def status() -> tuple[bool, str]:
    p = pid()
    if answering():
        return True, f"running (pid {p}), answering at {bootstrap_servers()} (Kafka {KAFKA_VERSION}, KRaft)"
    if p:
        return False, f"process {p} alive but not answering at {bootstrap_servers()}"
    return False, "stopped"


def _java() -> str:
    java = find_binary("java")
    if java is None:
        apt_install("openjdk-17-jre-headless")
        java = find_binary("java")
    if java is None:
        raise ServiceError("java not found after installing openjdk-17-jre-headless")
    return java


def _ensure_jars() -> None:
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
    if LIBS_MARKER.exists() and LIBS_MARKER.read_text().strip() == pom_hash and LIBS.is_dir():
        return
    mvn = find_binary("mvn")
    if mvn is None:
        apt_install("maven")
        mvn = find_binary("mvn")
    if mvn is None:
        raise ServiceError("mvn not found after installing maven")
    shutil.rmtree(LIBS, ignore_errors=True)
    LIBS_MARKER.unlink(missing_ok=True)
    log(f"downloading Kafka {KAFKA_VERSION} jars from Maven Central into {LIBS}")
    t0 = time.monotonic()
    res = subprocess.run([mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                          f"-DoutputDirectory={LIBS}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0 or not any(LIBS.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        raise ServiceError(f"mvn dependency:copy-dependencies failed:\n{res.stdout[-4000:]}")
    LIBS_MARKER.write_text(pom_hash + "\n")
    log(f"jars ready ({time.monotonic() - t0:.1f}s)")


def _write_config() -> None:
    # Rewritten on every start so port env vars take effect; static quorum voters mean
    # the formatted storage does not depend on them.
    CONFIG.write_text(f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{controller_port()}
listeners=PLAINTEXT://{HOST}:{port()},CONTROLLER://{HOST}:{controller_port()}
advertised.listeners=PLAINTEXT://{HOST}:{port()}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs={DATA}

# single node: every internal topic has one replica
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
# fewer internal partitions: faster first consumer group / first transaction on 2 cores
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4

# after a SIGKILL the new broker incarnation cannot register until the old one's session
# expires (default 9 s): keep crash-restart tests quick
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
# the broker aborts transactions past their timeout on this period (default 10 s): the test of a
# worker stopped past kafka.transaction_timeout_ms sees the abort and the fencing within seconds
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000

num.partitions=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
""")


def _cluster_id() -> str:
    # Same format as `kafka-storage random-uuid`: url-safe base64 of 16 random bytes, no padding
    # (and not starting with '-', which CLI parsers would take for an option).
    if CLUSTER_ID.exists():
        return CLUSTER_ID.read_text().strip()
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            CLUSTER_ID.write_text(cid + "\n")
            return cid


def _java_cmd(java: str, main: str, *args: str, heap: str) -> list[str]:
    return [java, *heap.split(), "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={STATE}",
            "-cp", f"{LIBS}/*", main, *args]


def _format_storage(java: str) -> None:
    if (DATA / "meta.properties").exists() and CLUSTER_ID.exists():
        return  # formatted before: keep topics and offsets
    shutil.rmtree(DATA, ignore_errors=True)
    CLUSTER_ID.unlink(missing_ok=True)
    cid = _cluster_id()
    log(f"formatting {DATA} (cluster id {cid})")
    # kafka.tools.StorageTool is the main behind bin/kafka-storage.sh in 4.1.1; with static
    # controller.quorum.voters no --standalone/--initial-controllers flag is needed.
    res = subprocess.run(_java_cmd(java, "kafka.tools.StorageTool", "format", "-t", cid,
                                   "-c", str(CONFIG), heap="-Xmx256m"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        raise ServiceError(f"kafka storage format failed:\n{res.stdout[-4000:]}")


def _wait_ready(server_pid: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive(server_pid):
            raise ServiceError(f"Kafka (pid {server_pid}) exited during startup; last lines of "
                               f"{SERVER_LOG}:\n{tail(SERVER_LOG)}\n--- {STDOUT_LOG}:\n{tail(STDOUT_LOG, 20)}")
        if answering(timeout=2.0):
            return
        time.sleep(0.5)
    raise ServiceError(f"Kafka not answering at {bootstrap_servers()} after {START_TIMEOUT:.0f}s; "
                       f"last lines of {SERVER_LOG}:\n{tail(SERVER_LOG)}")


def start() -> None:
    """Start (or reuse) the broker and wait until it serves metadata; raises ServiceError on failure."""
    running = pid()
    if running:
        log(f"kafka already running (pid {running}), waiting until it answers")
        _wait_ready(running)
        return
    for p in (port(), controller_port()):
        if port_open(HOST, p):
            raise ServiceError(f"port {p} is taken by a process that is not this checkout's Kafka; "
                               f"stop it or set CDC_TEST_KAFKA_PORT / CDC_TEST_KAFKA_CONTROLLER_PORT")
    java = _java()
    _ensure_jars()
    STATE.mkdir(parents=True, exist_ok=True)
    _write_config()
    _format_storage(java)
    t0 = time.monotonic()
    server_pid = spawn(_java_cmd(java, "kafka.Kafka", str(CONFIG), heap="-Xmx512m -Xms256m"),
                       STDOUT_LOG, PID_FILE)
    _wait_ready(server_pid)
    log(f"kafka up at {bootstrap_servers()} (pid {server_pid}, {time.monotonic() - t0:.1f}s)")


def stop(kill: bool = False) -> None:
    """Clean shutdown (SIGTERM, SIGKILL after 30 s); kill=True simulates a crash. Data is kept."""
    running = pid()
    if running:
        log(f"stopping kafka (pid {running}){' with SIGKILL' if kill else ''}")
        terminate(running, "kafka", kill=kill)
    PID_FILE.unlink(missing_ok=True)


def restart(kill: bool = False) -> None:
    stop(kill=kill)
    start()
