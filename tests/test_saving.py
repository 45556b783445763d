"""Saving and loading: round trips, resuming training exactly, atomic writes (also
with a writer killed mid-write), and clean errors for corrupt, truncated, foreign
and malicious files (path traversal, pickled arrays)."""
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import fastrnn as fr
from fastrnn import callbacks, layers, losses, metrics, optimizers
from fastrnn.models import saving


def _classifier(seed=0):
    model = fr.Sequential([
        layers.Embedding(12, 5, mask_zero=True),
        layers.LSTM(6, return_sequences=True, dropout=0.1, recurrent_dropout=0.1),
        layers.Bidirectional(layers.GRU(4), merge_mode="sum"),
        layers.Dropout(0.2),
        layers.Dense(3),
    ], seed=seed, name="clf")
    model.compile(optimizers.Adam(1e-2, clipnorm=1.0), losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 12, (n, 7))
    for i in range(n):
        x[i, rng.integers(2, 8):] = 0
    return x, rng.integers(0, 3, n)


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def _encoder_decoder():
    enc_in, dec_in = fr.Input((None,), dtype="int32", name="e_in"), fr.Input((None,), dtype="int32", name="d_in")
    embed = layers.Embedding(10, 4, mask_zero=True, name="s_embed")
    _, h, c = layers.LSTM(5, return_state=True, name="s_enc")(embed(enc_in))
    dec = layers.LSTM(5, return_sequences=True, name="s_dec")(embed(dec_in), initial_state=[h, c])
    out = layers.TimeDistributed(layers.Dense(10), name="s_out")(dec)
    model = fr.Model([enc_in, dec_in], [out, layers.Dense(1, name="s_val")(h)], name="seq2seq", seed=3)
    model.compile(optimizers.RMSprop(1e-2), [losses.SparseCategoricalCrossentropy(from_logits=True), "mse"],
                  loss_weights=[1.0, 0.1], metrics=[["accuracy"], ["mae"]])
    return model


# ---------------------------------------------------------------------------
# round trips

def test_save_load_predict_identical(tmp_path):
    x, y = _data()
    model = _classifier()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=1)
    path = tmp_path / "clf.fastrnn"
    model.save(path)
    loaded = fr.load_model(path)
    assert isinstance(loaded, fr.Sequential) and loaded.name == "clf"
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert _same(loaded.get_weights(), model.get_weights())
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # compile configuration and optimizer state came back
    assert isinstance(loaded.optimizer, optimizers.Adam) and loaded.optimizer.get_config() == model.optimizer.get_config()
    ref, got = model.optimizer.get_state(), loaded.optimizer.get_state()
    assert set(ref) == set(got) and all(np.array_equal(ref[k], got[k]) for k in ref)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    assert loaded.metrics_names == ["loss", "accuracy"]
    assert isinstance(loaded._metric_fns[0][0], metrics.SparseCategoricalAccuracy)


def test_save_load_functional_encoder_decoder(tmp_path):
    rng = np.random.default_rng(2)
    model = _encoder_decoder()
    enc, dec = rng.integers(1, 10, (6, 5)), rng.integers(1, 10, (6, 4))
    y = [rng.integers(0, 10, (6, 4)), rng.standard_normal((6, 1))]
    model.fit([enc, dec], y, epochs=1, verbose=0)
    model.save(tmp_path / "s2s.fastrnn")
    loaded = fr.load_model(tmp_path / "s2s.fastrnn")
    assert isinstance(loaded, fr.Model) and loaded.input_names == ["e_in", "d_in"]
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    for a, b in zip(loaded.predict([enc, dec]), model.predict([enc, dec])):
        np.testing.assert_array_equal(a, b)
    assert loaded.evaluate([enc, dec], y, return_dict=True, verbose=0) == \
        model.evaluate([enc, dec], y, return_dict=True, verbose=0)
    # the same graph: one more training step gives the same weights
    loaded.train_on_batch([enc, dec], y)
    model.train_on_batch([enc, dec], y)
    assert _same(loaded.get_weights(), model.get_weights())


def test_save_uncompiled_and_without_optimizer(tmp_path):
    model = fr.Sequential([layers.Dense(2, input_shape=(3,))])
    model.save(tmp_path / "a.fastrnn")
    loaded = fr.load_model(tmp_path / "a.fastrnn")
    assert not loaded.compiled and _same(loaded.get_weights(), model.get_weights())
    model.compile("adam", "mse")
    model.train_on_batch(np.ones((2, 3)), np.ones((2, 2)))
    model.save(tmp_path / "b.fastrnn", include_optimizer=False)
    with zipfile.ZipFile(tmp_path / "b.fastrnn") as zf:
        assert sorted(zf.namelist()) == ["config.json", "weights.npz"]
    loaded = fr.load_model(tmp_path / "b.fastrnn")
    assert loaded.compiled and loaded.optimizer.iterations == 0
    assert not fr.load_model(tmp_path / "b.fastrnn", compile=False).compiled


def test_file_layout(tmp_path):
    model = _classifier()
    model.build((None, 7))
    model.train_on_batch(*_data(8))
    path = tmp_path / "m.fastrnn"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["config.json", "optimizer.npz", "weights.npz"]
        cfg = json.loads(zf.read("config.json"))
        assert cfg["format"] == "fastrnn.model" and cfg["format_version"] == saving.FORMAT_VERSION
        assert cfg["model"]["class_name"] == "Sequential"
        assert cfg["compile"]["optimizer"]["class_name"] == "Adam"
        assert [(e["layer"], e["name"], tuple(e["shape"])) for e in cfg["weights"]][:2] == \
            [(model.layers[0].name, "embeddings", (12, 5)),
             (model.layers[1].name, "kernel", (5, 24))]
        with np.load(io.BytesIO(zf.read("weights.npz")), allow_pickle=False) as npz:
            assert len(npz.files) == len(model.get_weights())


def test_resume_from_checkpoint_is_bit_exact(tmp_path):
    """4 epochs straight == 2 epochs, save, load, 2 more epochs (seeded shuffling and dropout, Adam)."""
    x, y = _data(48)
    straight = _classifier()
    straight.fit(x, y, epochs=4, batch_size=8, seed=7, verbose=0)

    first = _classifier()
    ckpt = callbacks.ModelCheckpoint(str(tmp_path / "epoch-{epoch}.fastrnn"), monitor="loss")
    first.fit(x, y, epochs=2, batch_size=8, seed=7, verbose=0, callbacks=[ckpt])
    resumed = fr.load_model(tmp_path / "epoch-2.fastrnn")
    resumed.fit(x, y, epochs=4, initial_epoch=2, batch_size=8, seed=7, verbose=0)
    assert _same(resumed.get_weights(), straight.get_weights())
    assert resumed.optimizer.iterations == straight.optimizer.iterations == 24
    # without the optimizer state the result differs (so the test can fail)
    first.save(tmp_path / "no_opt.fastrnn", include_optimizer=False)
    fresh_opt = fr.load_model(tmp_path / "no_opt.fastrnn")
    fresh_opt.fit(x, y, epochs=4, initial_epoch=2, batch_size=8, seed=7, verbose=0)
    assert not _same(fresh_opt.get_weights(), straight.get_weights())


def test_save_weights_load_weights(tmp_path):
    a, b = _classifier(seed=1), _classifier(seed=2)
    a.build((None, 7))
    b.build((None, 7))
    a.save_weights(tmp_path / "w.fastrnn")
    b.load_weights(tmp_path / "w.fastrnn")
    assert _same(a.get_weights(), b.get_weights())
    b.load_weights(_save(a, tmp_path / "full.fastrnn"))           # a model file holds weights too
    with pytest.raises(ValueError, match="weights file"):
        fr.load_model(tmp_path / "w.fastrnn")
    other = fr.Sequential([layers.Embedding(12, 5), layers.LSTM(7), layers.Dense(3)])
    other.build((None, 7))
    before = other.get_weights()
    with pytest.raises(ValueError, match="w.fastrnn"):
        other.load_weights(tmp_path / "w.fastrnn")
    assert _same(other.get_weights(), before)                     # nothing changed


def _save(model, path):
    model.save(path)
    return path


# ---------------------------------------------------------------------------
# atomic writes

def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.fastrnn"
    old_model = fr.Sequential([layers.Dense(2, input_shape=(3,))], seed=0)
    old_model.save(path)
    old_bytes = path.read_bytes()
    new_model = fr.Sequential([layers.Dense(2, input_shape=(3,))], seed=1)
    real = zipfile.ZipFile.writestr

    def failing(self, name, data, *args, **kwargs):
        if str(getattr(name, "filename", name)) == "weights.npz":
            raise OSError("disk full (simulated)")
        return real(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    with pytest.raises(OSError, match="simulated"):
        new_model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.fastrnn"]          # no temp file left
    assert _same(fr.load_model(path).get_weights(), old_model.get_weights())

    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("rename failed")))
    with pytest.raises(OSError, match="rename failed"):
        new_model.save_weights(path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes and sorted(p.name for p in tmp_path.iterdir()) == ["m.fastrnn"]


def test_killed_writer_leaves_the_old_file(tmp_path):
    """A process killed (SIGKILL) in the middle of writing the archive: the target keeps
    its old content, and only a hidden temporary file may be left beside it."""
    path = tmp_path / "m.fastrnn"
    old = fr.Sequential([layers.Dense(64, input_shape=(64,))], seed=0)
    old.save(path)
    old_bytes = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, zipfile
        import fastrnn as fr
        from fastrnn import layers
        model = fr.Sequential([layers.Dense(64, input_shape=(64,))], seed=1)
        real = zipfile.ZipFile.writestr
        def dying(self, name, data, *a, **k):
            if str(getattr(name, "filename", name)) == "weights.npz":
                self.fp.write(data[: len(data) // 2])
                self.fp.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, name, data, *a, **k)
        zipfile.ZipFile.writestr = dying
        model.save({str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    assert path.read_bytes() == old_bytes
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "m.fastrnn"]
    assert all(n.startswith(".m.fastrnn.") and n.endswith(".tmp") for n in leftovers), leftovers
    assert _same(fr.load_model(path).get_weights(), old.get_weights())
    for n in leftovers:                       # the torn temporary file itself is refused cleanly
        with pytest.raises(ValueError, match="corrupt|truncated"):
            fr.load_model(tmp_path / n)


def test_saved_file_mode_follows_umask(tmp_path):
    model = fr.Sequential([layers.Dense(1, input_shape=(2,))])
    model.save(tmp_path / "m.fastrnn")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "m.fastrnn").stat().st_mode & 0o777 == 0o666 & ~mask


# ---------------------------------------------------------------------------
# bad files

@pytest.fixture
def saved(tmp_path):
    model = _classifier()
    x, y = _data(16)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "good.fastrnn"
    model.save(path)
    return path


def _rewrite(src, dst, change):
    """Copy the zip `src` to `dst`, with `change(name, bytes) -> bytes | None (drop)`; extra entries
    come from `change("__extra__", None)` as a list of (name, bytes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
        for name, data in change("__extra__", None) or []:
            zout.writestr(name, data)
    return dst


def _config_change(fn):
    def change(name, data):
        if name == "config.json":
            cfg = json.loads(data)
            fn(cfg)
            return json.dumps(cfg).encode()
        return None if name == "__extra__" else data
    return change


def _load_error(path):
    with pytest.raises(ValueError) as info:
        fr.load_model(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    return msg


def test_truncated_files(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (0, 10, 100, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1):
        p = tmp_path / f"cut{cut}.fastrnn"
        p.write_bytes(data[:cut])
        msg = _load_error(p)
        assert "truncated" in msg or "corrupt" in msg or "not a fastrnn" in msg, msg


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "not a fastrnn file" in _load_error(text)
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.md", "x")
    assert "unexpected zip entry" in _load_error(other_zip)
    npz = tmp_path / "arrays.npz"
    np.savez(npz, a=np.zeros(3))
    assert "unexpected zip entry" in _load_error(npz)
    keras_like = tmp_path / "k.fastrnn"
    with zipfile.ZipFile(keras_like, "w") as zf:
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {}}))
    assert "format" in _load_error(keras_like)


def test_format_version_and_schema(saved, tmp_path):
    newer = _rewrite(saved, tmp_path / "newer.fastrnn", _config_change(lambda c: c.update(format_version=99)))
    assert "newer fastrnn" in _load_error(newer)
    for i, mutate in enumerate([
        lambda c: c.update(format_version="1"),
        lambda c: c.update(weights={"a": 1}),
        lambda c: c["weights"][0].update(shape=[-1, 5]),
        lambda c: c["weights"][0].update(dtype="object"),
        lambda c: c["model"].update(class_name="Pickle"),
        lambda c: c["model"]["config"]["layers"][0].update(class_name="NoSuchLayer"),
        lambda c: c["model"]["config"]["layers"][1]["config"].update(units="six"),
        lambda c: c["model"]["config"].pop("layers"),
        lambda c: c["compile"].update(loss="nope"),
        lambda c: c["compile"]["optimizer"].update(class_name="Evil"),
        lambda c: c["weights"][1].update(name="not_kernel"),
        lambda c: c["weights"][0].update(shape=[12, 6]),
        lambda c: c["weights"].pop(),
        lambda c: c["optimizer"]["state"][1].update(name="m/99"),
    ]):
        bad = _rewrite(saved, tmp_path / f"bad{i}.fastrnn", _config_change(mutate))
        _load_error(bad)
    not_json = _rewrite(saved, tmp_path / "notjson.fastrnn",
                        lambda n, d: b"{not json" if n == "config.json" else (None if n == "__extra__" else d))
    assert "not valid JSON" in _load_error(not_json)


def test_path_traversal_and_duplicate_entries(saved, tmp_path):
    for name in ("../evil.txt", "/etc/evil", "a/../../evil", "C:\\evil"):
        bad = _rewrite(saved, tmp_path / "trav.fastrnn",
                       lambda n, d, name=name: [(name, b"x")] if n == "__extra__" else d)
        msg = _load_error(bad)
        assert "refusing the zip entry" in msg, msg
    with pytest.warns(UserWarning, match="Duplicate"):
        dup = _rewrite(saved, tmp_path / "dup.fastrnn",
                       lambda n, d: [("config.json", b"{}")] if n == "__extra__" else d)
    assert "twice" in _load_error(dup)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_pickled_arrays_are_refused(saved, tmp_path, monkeypatch):
    """A weights.npz holding an object array (which only pickle can load) is refused, and
    nothing during a load ever calls pickle."""
    with zipfile.ZipFile(saved) as zf:
        cfg = json.loads(zf.read("config.json"))
        with np.load(io.BytesIO(zf.read("weights.npz"))) as npz:
            arrays = {k: npz[k] for k in npz.files}
    key = cfg["weights"][0]["key"]
    arrays[key] = np.empty(arrays[key].shape, dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    evil = _rewrite(saved, tmp_path / "evil.fastrnn",
                    lambda n, d: buf.getvalue() if n == "weights.npz" else (None if n == "__extra__" else d))
    calls = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append(a) or None)
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(a) or None)
    msg = _load_error(evil)
    assert "pickle" in msg or "object" in msg, msg
    assert calls == []
    fr.load_model(saved)                     # a good file loads without pickle
    assert calls == []


def test_oversized_entries_are_refused(saved, tmp_path):
    def pad(name, data):
        if name == "weights.npz":
            return data + b"\0" * (3 << 20)
        return None if name == "__extra__" else data
    big = _rewrite(saved, tmp_path / "big.fastrnn", pad)
    assert "more than its manifest" in _load_error(big)


def test_mutated_files_load_or_fail_cleanly(saved, tmp_path):
    """Random byte flips, insertions and cuts: every outcome is a loaded model or a ValueError."""
    data = bytearray(saved.read_bytes())
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "error": 0}
    path = tmp_path / "mut.fastrnn"
    for trial in range(150):
        mutated = bytearray(data)
        kind = trial % 3
        pos = int(rng.integers(0, len(data)))
        if kind == 0:
            for _ in range(int(rng.integers(1, 4))):
                mutated[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            mutated[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        else:
            del mutated[pos:pos + int(rng.integers(1, 64))]
        path.write_bytes(bytes(mutated))
        try:
            fr.load_model(path)
            outcomes["loaded"] += 1
        except ValueError as exc:
            assert str(path) in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 100, outcomes
