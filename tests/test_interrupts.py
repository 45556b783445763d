"""Ctrl-C (SIGINT) during `fit`, in a child process: fit stops at a batch boundary,
the weights are exactly those of an uninterrupted run after the same number of
updates, and every ModelCheckpoint file on disk loads.

The child trains a small LSTM with a checkpoint every 2 batches; the parent
sends SIGINT at a different moment in each run (during forward/backward, the
optimizer update or a checkpoint write, wherever it lands). A replay child then
trains the same model for exactly `optimizer.iterations` updates without
interruption, and the two sets of weights must agree bit for bit.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

CHILD = textwrap.dedent('''
    import json, sys
    import numpy as np
    import fastrnn as fr
    from fastrnn import layers, callbacks as C

    mode, out_dir, inject = sys.argv[1], sys.argv[2], sys.argv[3]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 12, 6)).astype(np.float32)
    y = rng.standard_normal((256, 1)).astype(np.float32)
    model = fr.Sequential([fr.Input((None, 6)), layers.LSTM(24), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    wr = np.random.default_rng(1)
    model.set_weights([wr.uniform(-0.3, 0.3, w.shape).astype(w.dtype) for w in model.get_weights()])

    class Stop(Exception):
        pass

    class Signals(C.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if mode == "interrupt" and self.model.optimizer.iterations == 3:
                print("ready", flush=True)
            if mode != "interrupt" and self.model.optimizer.iterations == int(mode):
                raise Stop

    if inject == "update":        # in the middle of the 6th update, after its first parameter
        calls = []
        real = model.optimizer._update
        def update(*args):
            calls.append(model.optimizer.iterations)
            if calls.count(5) == 1 and calls[-1] == 5:
                import os, signal
                os.kill(os.getpid(), signal.SIGINT)
            return real(*args)
        model.optimizer._update = update
    if inject == "save":          # inside the second checkpoint's write, its temporary file open
        import contextlib, os, signal
        import fastrnn.models.saving as saving
        real_write, saves = saving.atomic_write, []
        @contextlib.contextmanager
        def atomic_write(path, *args, **kwargs):
            with real_write(path, *args, **kwargs) as f:
                saves.append(path)
                if len(saves) == 2:
                    os.kill(os.getpid(), signal.SIGINT)
                yield f
        saving.atomic_write = atomic_write

    cbs = [Signals()]
    if mode == "interrupt":
        cbs.append(C.ModelCheckpoint(out_dir + "/ck-{epoch}-{batch}.fastrnn", save_freq=2))
    stopped = "completed"
    try:
        model.fit(x, y, batch_size=16, epochs=200, shuffle=False, callbacks=cbs, verbose=0)
    except KeyboardInterrupt:
        stopped = "interrupted"
    except Stop:
        stopped = "replayed"
    np.savez(out_dir + "/weights-" + mode + ".npz", *model.get_weights())
    with open(out_dir + "/result-" + mode + ".json", "w") as f:
        json.dump({"stopped": stopped, "iterations": model.optimizer.iterations}, f)
''')


def _child(tmp_path, mode, inject="none"):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script), mode, str(tmp_path), inject]


@pytest.mark.parametrize("when", ["0.0", "0.013", "0.041", "0.097", "update", "save"])
def test_sigint_during_fit_stops_at_a_batch_boundary(tmp_path, when):
    """`when`: seconds after the third update for the parent's SIGINT, or the child
    sends it itself from inside an optimizer update or a checkpoint write."""
    from fastrnn.models import load_model
    inject = when if when in ("update", "save") else "none"
    proc = subprocess.Popen(_child(tmp_path, "interrupt", inject), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
        if inject == "none":
            time.sleep(float(when))
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    result = json.loads((tmp_path / "result-interrupt.json").read_text())
    assert result["stopped"] == "interrupted"
    n = result["iterations"]
    assert n >= 3
    if inject == "update":
        assert n == 6, "the update that Ctrl-C interrupted was not finished first"
    if inject == "save":
        assert n == 4, "Ctrl-C inside the checkpoint write did not stop fit there"

    replay = subprocess.run(_child(tmp_path, str(n)), capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert json.loads((tmp_path / f"result-{n}.json").read_text()) == {"stopped": "replayed", "iterations": n}
    got = np.load(tmp_path / "weights-interrupt.npz")
    want = np.load(tmp_path / f"weights-{n}.npz")
    assert len(got.files) == len(want.files) > 0
    for k in want.files:
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"weights after {n} updates: {k}")

    checkpoints = sorted(p for p in os.listdir(tmp_path) if p.startswith("ck-"))
    assert checkpoints, "no checkpoint was written"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp") or p.startswith(".")], os.listdir(tmp_path)
    for name in checkpoints:
        model = load_model(str(tmp_path / name))
        assert model.optimizer.iterations % 2 == 0 and 0 < model.optimizer.iterations <= n
