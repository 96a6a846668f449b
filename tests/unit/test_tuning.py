"""tuning.tune(): what `cdc-bridge run` and the reader process do once loaded (in a subprocess:
freezing would change this test process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = ("import gc, json; from cdc_bridge.tuning import tune; done = tune(); "
         "import sys; print(json.dumps([done, gc.get_threshold(), gc.get_freeze_count(), sys.getswitchinterval()]))")


def run_probe(**env: str) -> list:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout)


def test_tune_freezes_what_is_loaded_and_relaxes_the_thresholds():
    done, threshold, frozen, switch = run_probe()
    assert done is True
    assert threshold == [50_000, 20, 100] and switch == 0.005   # the switch interval stays CPython's
    assert frozen > 1000   # the interpreter's and cdc_bridge's objects at that point


def test_cdc_bridge_gc_tuning_0_keeps_the_defaults():
    done, threshold, frozen, switch = run_probe(CDC_BRIDGE_TUNING="0")
    assert done is False
    assert threshold == [700, 10, 10] and frozen == 0 and switch == 0.005
