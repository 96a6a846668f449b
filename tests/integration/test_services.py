"""The dev services are real: MariaDB writes a ROW binlog with GTIDs, Kafka has working transactions."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import MariadbGtidEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent


def test_mariadb_binlog_roundtrip(admin_db, fresh_db, mysql_settings):
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{fresh_db}`.accounts ("
                    " id INT PRIMARY KEY, owner VARCHAR(50) NOT NULL, balance DECIMAL(10,2) NOT NULL)"
                    " ENGINE=InnoDB")
        # The DDL above (and CREATE DATABASE) got GTIDs, so this is normally non-empty. On MariaDB an
        # empty slave_connect_state means "from the oldest binlog", which only_schemas still filters.
        cur.execute("SELECT @@gtid_current_pos")
        (start_gtid,) = cur.fetchone()

        cur.execute("BEGIN")
        cur.execute(f"INSERT INTO `{fresh_db}`.accounts VALUES (1, 'ann', 10.50), (2, 'bob', 3.00)")
        cur.execute(f"UPDATE `{fresh_db}`.accounts SET balance = 20.25 WHERE id = 1")
        cur.execute("COMMIT")
        cur.execute(f"DELETE FROM `{fresh_db}`.accounts WHERE id = 2")

    stream = BinLogStreamReader(
        connection_settings=mysql_settings,
        server_id=4242,
        is_mariadb=True,
        auto_position=start_gtid or "",
        blocking=False,  # stop at the current end of the binlog
        resume_stream=True,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, MariadbGtidEvent, XidEvent],
        only_schemas=[fresh_db],
    )
    changes = []  # (gtid of the enclosing transaction, kind, row data)
    gtid = None
    try:
        for event in stream:
            if isinstance(event, MariadbGtidEvent):
                gtid = event.gtid
            elif isinstance(event, XidEvent):
                gtid = None  # transaction committed
            else:
                assert event.table == "accounts"
                for row in event.rows:
                    if isinstance(event, WriteRowsEvent):
                        changes.append((gtid, "insert", row["values"]))
                    elif isinstance(event, UpdateRowsEvent):
                        changes.append((gtid, "update", (row["before_values"], row["after_values"])))
                    else:
                        changes.append((gtid, "delete", row["values"]))
    finally:
        stream.close()

    ann = {"id": 1, "owner": "ann", "balance": Decimal("10.50")}
    bob = {"id": 2, "owner": "bob", "balance": Decimal("3.00")}
    assert [(kind, data) for _, kind, data in changes] == [
        ("insert", ann),
        ("insert", bob),
        ("update", (ann, {**ann, "balance": Decimal("20.25")})),
        ("delete", bob),
    ]
    gtids = [g for g, _, _ in changes]
    assert all(g and g.startswith("0-1-") for g in gtids)  # domain 0, server_id 1
    assert gtids[0] == gtids[1] == gtids[2], "INSERT+UPDATE committed as one transaction"
    assert gtids[3] != gtids[0], "the DELETE is its own transaction"


def _read_all(bootstrap: str, topic: str, isolation: str, expect_at_least: int) -> list[bytes]:
    """Every message of the topic visible under `isolation`, read until the end (time-bounded)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"g-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
        "enable.partition.eof": True,
    })
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                # EOF is reached only past the commit/abort markers: the topic is fully read
                if msg.error().code() == KafkaError._PARTITION_EOF and len(values) >= expect_at_least:
                    return values
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(msg.error())
                continue
            values.append(msg.value())
    finally:
        consumer.close()
    raise AssertionError(f"{isolation}: topic {topic} not read to its end in 30s, got {values}")


def test_kafka_transactions_commit_and_abort(kafka_bootstrap):
    topic = f"t-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)

    producer = Producer({"bootstrap.servers": kafka_bootstrap,
                         "transactional.id": f"tx-{uuid.uuid4().hex}"})
    producer.init_transactions(30)

    producer.begin_transaction()
    producer.produce(topic, b"committed-1")
    producer.produce(topic, b"committed-2")
    producer.commit_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, b"aborted-1")
    producer.flush(30)  # really on the broker's log, not just buffered, before the abort
    producer.abort_transaction(30)

    assert _read_all(kafka_bootstrap, topic, "read_committed", 2) == [b"committed-1", b"committed-2"]
    # the aborted record is physically in the log: isolation is done by the broker, not by us
    assert _read_all(kafka_bootstrap, topic, "read_uncommitted", 3) == [
        b"committed-1", b"committed-2", b"aborted-1"]
