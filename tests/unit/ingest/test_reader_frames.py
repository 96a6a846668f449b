"""The reader process's framing: length-prefixed messages over a socketpair, read in large chunks."""

import socket
import threading
import time

import pytest

from cdc_bridge.ingest import reader_process
from cdc_bridge.ingest.reader_process import _FRAME, _FrameReader, _send_frame


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_many_frames_of_one_send_come_out_one_by_one_in_order(pair):
    a, b = pair
    msgs = [bytes([i % 256]) * (i * 37) for i in range(200)]   # the empty message too
    t = threading.Thread(target=a.sendall, args=(b"".join(_FRAME.pack(len(m)) + m for m in msgs),))
    t.start()   # 0.7 MB: more than the socket buffer holds
    r = _FrameReader(b)
    assert [r.next(1.0) for _ in msgs] == msgs
    t.join()
    assert r.next(0) is None


def test_a_frame_split_anywhere_waits_for_its_rest(pair, monkeypatch):
    a, b = pair
    monkeypatch.setattr(reader_process, "_RECV_CHUNK", 3)   # every recv brings 3 bytes at most
    r = _FrameReader(b)
    msg = b"transaction-" * 50
    wire = _FRAME.pack(len(msg)) + msg
    a.sendall(wire[:2])
    assert r.next(0.05) is None          # half a header: nothing yet, and nothing lost
    a.sendall(wire[2:100])
    assert r.next(0.05) is None          # header and part of the body
    a.sendall(wire[100:] + _FRAME.pack(2) + b"ok")
    assert r.next(1.0) == msg
    assert r.next(1.0) == b"ok"


def test_a_large_frame_crosses_many_chunks(pair):
    a, b = pair
    msg = bytes(range(256)) * 20_000    # 5 MB: more than one recv chunk
    t = threading.Thread(target=_send_frame, args=(a, msg))
    t.start()
    assert _FrameReader(b).next(5.0) == msg
    t.join()


def test_timeout_returns_none_and_eof_raises(pair):
    a, b = pair
    r = _FrameReader(b)
    t0 = time.monotonic()
    assert r.next(0.1) is None
    assert time.monotonic() - t0 >= 0.09
    _send_frame(a, b"last")
    a.close()
    assert r.next(1.0) == b"last"
    with pytest.raises(EOFError):
        r.next(1.0)
