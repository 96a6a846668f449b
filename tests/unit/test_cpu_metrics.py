"""cdc_bridge_cpu_seconds_total: CPU time of the bridge's threads by role, and of the reader process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from cdc_bridge.observability.metrics import BridgeMetrics


def cpu_by_thread(metrics: BridgeMetrics) -> dict[str, float]:
    return {s.labels["thread"]: s.value for s in metrics.cpu.collect().__next__().samples}


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_family_is_exported_without_a_bridge():
    names = {f.name for f in BridgeMetrics().registry.collect()}
    assert "cdc_bridge_cpu_seconds" in names
    assert cpu_by_thread(BridgeMetrics()).keys() <= {"other"}   # no main loop known yet: all is "other"


def test_threads_are_labelled_by_role_and_the_reader_process_counted():
    metrics = BridgeMetrics()
    loop_tid: list[int] = []
    reader = subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\n"
                               "while time.process_time() - t < 0.3: pass\ntime.sleep(30)"])
    committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="committer")
    try:
        def loop() -> None:
            loop_tid.append(threading.get_native_id())
            burn(0.3)
            time.sleep(1.0)   # alive while we read

        t = threading.Thread(target=loop)
        t.start()
        committer.submit(burn, 0.2).result()
        time.sleep(0.5)       # the reader has burnt its 0.3 s
        metrics.cpu.sources = lambda: (loop_tid[0], reader.pid)
        cpu = cpu_by_thread(metrics)
        t.join()
    finally:
        reader.kill()
        reader.wait()
        committer.shutdown()
    assert cpu["main"] >= 0.25, cpu
    assert cpu["committer"] >= 0.15, cpu
    assert cpu["reader"] >= 0.25, cpu
    assert "other" in cpu


def test_a_reader_that_is_gone_is_left_out():
    metrics = BridgeMetrics()
    metrics.cpu.sources = lambda: (None, 2 ** 22 + 12345)   # no such pid
    assert "reader" not in cpu_by_thread(metrics)
