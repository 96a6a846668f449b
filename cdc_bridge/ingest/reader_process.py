"""The binlog source in a child process: reading and decoding run on their own core.

Reading and decoding row events is a third of the bridge's CPU; in one process it
shares the GIL with the aggregates and the Kafka serialization. `ProcessSource` runs a
`BinlogSource` in a child (`python -m cdc_bridge.ingest.reader_process FD`) and hands its
transactions to the parent through a socketpair, one pickled message each (length-prefixed
frames, read by the parent in large chunks: when the reader is ahead, one recv brings many), with the
same interface as BinlogSource (transactions(), stop(), on_reconnect, last_position)
plus `has_more()`: whether a transaction is already waiting, which lets the pipeline
commit a batch the moment it has caught up instead of waiting out `batch.max_wait_ms`.

The child holds nothing the parent has not seen: it never acknowledges or checkpoints;
the parent restarts it from its own committed position. It dies with the parent
(PR_SET_PDEATHSIG), so a SIGKILLed bridge never leaves a reader holding its server_id.
SIGINT/SIGTERM/SIGHUP are the parent's to handle: the child runs in its own process group
(a signal sent to the bridge's group, `kill -HUP -PGID` or a terminal's, would otherwise
kill it during its start-up, before it can ignore them), ignores them, and stops when told
to or when the socket closes.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from cdc_bridge.mapping.packed import PackedCommands, pack, packing_available
from cdc_bridge.source.errors import SourceError
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.settings import SourceSettings
from cdc_bridge.source.transaction import SourceTransaction

log = structlog.get_logger("cdc_bridge.ingest.reader_process")

# message kinds, child -> parent
_TXN, _TRANSLATED, _IDLE, _RECONNECT, _ERROR, _END = b"t", b"c", b"i", b"r", b"e", b"x"
_TXN_KINDS = (_TXN, _TRANSLATED)
_TICK_SECONDS = 0.2      # the parent yields an idle tick when nothing arrived for this long
_STOP_GRACE_SECONDS = 5.0


class ReaderProcessError(SourceError):
    """The binlog reader process ended without saying why (killed, out of memory, crashed)."""


_FRAME = struct.Struct("!I")   # each message: its length, then its bytes
_RECV_CHUNK = 1 << 20


def _send_frame(sock: socket.socket, raw: bytes) -> None:
    sock.sendall(_FRAME.pack(len(raw)) + raw)


class _FrameReader:
    """The messages of a socket, in order. Reads up to _RECV_CHUNK at a time and keeps what follows
    the frames it returned: a reader that is ahead hands over many transactions per system call, and
    the poll object is made once (multiprocessing's Connection made a selector per poll and read each
    message with two reads: a tenth of the bridge's main loop)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)

    def _take(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return None
        (n,) = _FRAME.unpack_from(buf, pos)
        end = pos + 4 + n
        if len(buf) < end:
            return None
        self._pos = end
        return bytes(buf[pos + 4:end])

    def _fill(self) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        chunk = self._sock.recv(_RECV_CHUNK)
        if not chunk:
            raise EOFError("the other end closed the socket")
        self._buf += chunk

    def next(self, timeout: float | None = None) -> bytes | None:
        """The next message; None when none is complete within `timeout` seconds (None: wait)."""
        while True:
            frame = self._take()
            if frame is not None:
                return frame
            if timeout is not None and not self._poll.poll(timeout * 1000):
                return None
            self._fill()


class ProcessSource:
    """A BinlogSource running in a child process; iterate transactions() once, like BinlogSource."""

    def __init__(self, settings: SourceSettings, tables: dict[str, set[str] | None],
                 start: SourcePosition | None = None, *, from_earliest: bool = False,
                 on_reconnect: Callable[[str], None] | None = None,
                 log_level: str = "INFO", json_logs: bool | None = None, mappings: Any = None,
                 change_stream: Any = None, pack: bool = False) -> None:
        """mappings: a MappingSet to translate with in the child (transactions then arrive with
        `wire`, `dead_letters` and `row_counts` instead of `changes`); None: row changes.
        pack: the commands arrive in their packed form (`packed`, mapping/packed.py) where they can.
        change_stream: a ChangeStreamSpec: the child also builds the change records (`change_records`)."""
        self.settings = settings
        self._spec = {"settings": settings, "tables": tables, "start": start,
                      "from_earliest": from_earliest, "log_level": log_level,
                      "json_logs": json_logs if json_logs is not None else not sys.stderr.isatty(),
                      "mappings": (mappings.aggregates, mappings.drop_unchanged_updates, mappings.signal_table)
                      if mappings else None, "change_stream": change_stream, "pack": pack}
        self.on_reconnect = on_reconnect
        self._position = start
        self._stop = threading.Event()
        self._iterating = False
        self._sock: socket.socket | None = None
        self._frames: _FrameReader | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._peeked: bytes | None = None  # a message has_more() received, for transactions() to handle
        self.reconnects = 0
        self.transactions_read = 0

    # ------------------------------------------------------------------ public

    @property
    def last_position(self) -> SourcePosition | None:
        return self._position

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Make transactions() end promptly. Safe from any thread and from signal handlers."""
        self._stop.set()

    def has_more(self) -> bool:
        """A transaction is already waiting: the reader is ahead of us.

        Idle ticks waiting in the socket are not "more" (the reader has caught up): they are
        dropped here (transactions() yields its own tick after _TICK_SECONDS of silence). Call
        it from the thread that iterates transactions(), between two items."""
        if self._peeked is not None:
            return self._peeked[:1] in _TXN_KINDS
        frames = self._frames
        try:
            while frames is not None:
                raw = frames.next(0)
                if raw is None:
                    break
                if raw[:1] == _IDLE:
                    continue
                self._peeked = raw  # a transaction, or news (reconnect, error, end) for transactions()
                return raw[:1] in _TXN_KINDS
        except (OSError, EOFError):
            pass  # transactions() finds the closed socket on its next read and says why
        return False

    def transactions(self) -> Iterator[SourceTransaction | None]:
        """Committed transactions in binlog order, with `None` as idle ticks. Iterate once."""
        if self._iterating:
            raise RuntimeError("ProcessSource.transactions() can only be iterated once")
        self._iterating = True
        self._spawn()
        frames = self._frames
        assert frames is not None
        loads = pickle.loads
        try:
            while not self._stop.is_set():
                try:
                    if self._peeked is not None:
                        raw, self._peeked = self._peeked, None
                    else:
                        got = frames.next(_TICK_SECONDS)
                        if got is None:
                            if self._proc is not None and self._proc.poll() is not None:
                                raise self._died()
                            yield None
                            continue
                        raw = got
                except (EOFError, OSError) as e:
                    if self._stop.is_set():
                        break
                    raise self._died() from e
                kind = raw[:1]
                if kind == _TRANSLATED:
                    gtid, commit_ts, position, row_counts, wire, dead, change_records, packed = loads(raw[1:])
                    txn = SourceTransaction(gtid, commit_ts, position, row_counts=row_counts, dead_letters=dead,
                                            change_records=change_records, wire=wire,
                                            packed=None if packed is None else PackedCommands(*packed))
                    self._position = position
                    self.transactions_read += 1
                    yield txn
                elif kind == _TXN:
                    txn = loads(raw[1:])
                    self._position = txn.position
                    self.transactions_read += 1
                    yield txn
                elif kind == _IDLE:
                    yield None
                elif kind == _RECONNECT:
                    self.reconnects += 1
                    if self.on_reconnect is not None:
                        try:
                            self.on_reconnect(raw[1:].decode())
                        except Exception:  # noqa: BLE001 - a metrics callback must not stop the stream
                            log.exception("on_reconnect callback failed")
                elif kind == _ERROR:
                    raise _rebuild_error(loads(raw[1:]))
                elif kind == _END:
                    break
        finally:
            self._shutdown()

    # ------------------------------------------------------------------ child management

    def _spawn(self) -> None:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        # the child imports the same cdc_bridge as we did (a checkout, a bench baseline tree)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self._proc = subprocess.Popen(
                # -P: not the working directory first on sys.path, PYTHONPATH (our tree) wins
                [sys.executable, "-P", "-m", "cdc_bridge.ingest.reader_process", str(child_sock.fileno()), str(os.getpid())],
                pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, env=env, close_fds=True,
                process_group=0)  # the group's signals are the parent's (see the module docstring)
        finally:
            child_sock.close()
        self._sock = parent_sock
        self._frames = _FrameReader(parent_sock)
        _send_frame(parent_sock, pickle.dumps(self._spec, protocol=pickle.HIGHEST_PROTOCOL))
        log.debug("binlog reader process started", pid=self._proc.pid)

    def _died(self) -> SourceError:
        code = self._proc.wait(timeout=_STOP_GRACE_SECONDS) if self._proc is not None else None
        return ReaderProcessError(
            f"the binlog reader process ended unexpectedly (exit status {code}); "
            "its log lines above say why; the bridge restarts it from the last committed position when restarted")

    def _shutdown(self) -> None:
        sock, self._sock, self._frames = self._sock, None, None
        proc, self._proc = self._proc, None
        if sock is not None:
            try:
                sock.close()  # the child's control thread sees EOF and stops its reader
            except OSError:
                pass
        if proc is not None:
            try:
                proc.wait(timeout=_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("binlog reader process did not stop in time; killing it", pid=proc.pid)
                proc.kill()
                proc.wait()


def _rebuild_error(info: dict[str, Any]) -> SourceError:
    """The child's exception as the same SourceError class (exit codes and isinstance checks hold);
    anything else (a bug) as a plain SourceError naming the original class."""
    try:
        module = sys.modules.get(info["module"]) or __import__(info["module"], fromlist=["_"])
        cls = getattr(module, info["qualname"])
    except Exception:  # noqa: BLE001
        cls = None
    if isinstance(cls, type) and issubclass(cls, SourceError):
        err = cls.__new__(cls)
        SourceError.__init__(err, info["message"])  # its own __init__ wants the original arguments
        return err
    return SourceError(f"binlog reader process: {info['qualname']}: {info['message']}")


# ---------------------------------------------------------------------- the child


def _die_with_parent(parent_pid: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the closed socket still stops us
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _child_main(fd: int, parent_pid: int) -> int:
    _die_with_parent(parent_pid)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    spec = pickle.loads(_FrameReader(sock).next())   # nothing follows the spec: nothing else is read

    from cdc_bridge.ingest.change_stream import reader_side
    from cdc_bridge.observability.logging import configure_logging
    from cdc_bridge.source.binlog import BinlogSource

    configure_logging(spec["log_level"], spec["json_logs"])
    structlog.contextvars.bind_contextvars(process="binlog-reader")

    send_lock = threading.Lock()

    def send(raw: bytes) -> None:
        with send_lock:
            _send_frame(sock, raw)

    describe, change_records = reader_side(spec.get("change_stream"))
    source = BinlogSource(spec["settings"], spec["tables"], spec["start"], from_earliest=spec["from_earliest"],
                          on_reconnect=lambda reason: send(_RECONNECT + reason.encode()), describe=describe)

    def control() -> None:
        # the parent never writes after the spec: EOF (or anything) means stop
        try:
            sock.recv(1)
        except OSError:
            pass
        source.stop()

    threading.Thread(target=control, name="reader-control", daemon=True).start()
    dumps = pickle.dumps
    proto = pickle.HIGHEST_PROTOCOL
    translate = None
    if spec.get("mappings"):
        from cdc_bridge.mapping.loader import MappingSet

        aggregates, drop_unchanged, signal_table = spec["mappings"]
        translate = MappingSet(aggregates, drop_unchanged_updates=drop_unchanged, signal_table=signal_table).translate

    from cdc_bridge.tuning import tune

    tune()  # as in the bridge: no full-heap collections in the middle of the stream

    packing = bool(spec.get("pack")) and packing_available()

    def message(txn: SourceTransaction) -> bytes:
        if translate is None:
            return _TXN + dumps(txn, proto)
        wire, dead = translate(txn, wire=True)
        packed = pack(wire) if packing else None
        if packed is not None:
            return _TRANSLATED + dumps((txn.gtid, txn.commit_ts, txn.position, txn.rows_by_table(), None, dead,
                                        change_records(txn), packed.to_tuple()), proto)
        return _TRANSLATED + dumps((txn.gtid, txn.commit_ts, txn.position, txn.rows_by_table(), wire, dead,
                                    change_records(txn), None), proto)

    try:
        for txn in source.transactions():
            send(_IDLE if txn is None else message(txn))
        send(_END)
        return 0
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return 0  # the parent went away: nothing to report to
    except BaseException as e:  # noqa: BLE001 - every failure is reported to the parent, then we exit
        info = {"module": type(e).__module__, "qualname": type(e).__qualname__, "message": str(e)}
        try:
            send(_ERROR + dumps(info, proto))
        except OSError:
            pass
        if not isinstance(e, SourceError):
            log.exception("binlog reader process failed")
        return 1


if __name__ == "__main__":
    sys.exit(_child_main(int(sys.argv[1]), int(sys.argv[2])))
