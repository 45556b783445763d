"""The command line (`python -m fastrnn ...`) and the character language model behind it."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest

from fastrnn import char_lm


def _run(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "fastrnn", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_the_commands():
    r = _run("--help")
    assert r.returncode == 0
    for cmd in ("demo", "train-lm", "generate", "bench", "check", "info"):
        assert cmd in r.stdout


def test_missing_files_give_clear_errors(tmp_path):
    r = _run("train-lm", str(tmp_path / "nope.txt"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = _run("train-lm", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr
    r = _run("generate", str(tmp_path / "nope.fastrnn"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_train_generate_round_trip(tmp_path):
    """train-lm on a small file saves a model that generate can load and sample from;
    training lowers the validation perplexity."""
    text = char_lm.stdlib_corpus(60_000)
    src = tmp_path / "corpus.txt"
    src.write_text(text)
    out = tmp_path / "m.fastrnn"
    r = _run("train-lm", str(src), "--out", str(out), "--seconds", "6", "--units", "64")
    assert r.returncode == 0, r.stderr
    assert out.exists() and (tmp_path / "m.fastrnn.vocab.json").exists()
    ppl = [float(line.split("perplexity ")[1].split()[0]) for line in r.stdout.splitlines() if "perplexity" in line]
    assert len(ppl) == 2 and ppl[1] < ppl[0] / 2, r.stdout
    r = _run("generate", str(out), "--prime", "def ", "--length", "50", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("def ") and len(r.stdout.rstrip("\n")) >= 50


def test_generation_is_reproducible_and_validated():
    text = char_lm.stdlib_corpus(20_000)
    lm = char_lm.CharLanguageModel.new(text, units=32, embed=8)
    a = lm.generate("import ", 40, 0.8, seed=3)
    b = lm.generate("import ", 40, 0.8, seed=3)
    assert a == b and a.startswith("import ")
    with pytest.raises(ValueError, match="temperature"):
        lm.generate("x", 5, 0.0)
    with pytest.raises(ValueError, match="length"):
        lm.generate("x", -1, 1.0)


def test_train_budget_and_checkpoint(tmp_path):
    text = char_lm.stdlib_corpus(30_000)
    lm = char_lm.CharLanguageModel.new(text, units=32, embed=8)
    (x, y), (xv, yv) = lm.split(text, 32)
    ckpt = str(tmp_path / "c.fastrnn")
    buf = io.StringIO()
    stats = lm.train(x, y, epochs=1, batch_size=32, checkpoint=ckpt, out=buf)
    assert stats["steps"] == len(x) // 32 and not stats["interrupted"]
    assert "chars/s" in buf.getvalue()
    again = char_lm.CharLanguageModel.load(ckpt)
    for w1, w2 in zip(lm.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    assert np.isclose(again.perplexity(xv, yv), lm.perplexity(xv, yv))


@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(__file__), "..", "benchmarks", "compare.py")),
                    reason="needs the source checkout")
def test_bench_runs_from_a_checkout():
    """`bench` hands over to the benchmark runner (checked here by its --help only)."""
    r = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "benchmarks", "compare.py"),
                        "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--quick" in r.stdout


def test_ctrl_c_stops_train_lm_with_a_checkpoint(tmp_path):
    """SIGINT during train-lm stops after the current batch and leaves a loadable model."""
    import signal
    import time
    text = char_lm.stdlib_corpus(60_000)
    src = tmp_path / "corpus.txt"
    src.write_text(text)
    out = tmp_path / "m.fastrnn"
    proc = subprocess.Popen([sys.executable, "-m", "fastrnn", "train-lm", str(src), "--out", str(out),
                             "--seconds", "120", "--units", "32"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    buf = ""
    while "chars/s" not in buf and time.time() < deadline:     # wait until training runs
        buf += proc.stdout.read(1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "interrupted" in stdout and "Traceback" not in stderr
    lm = char_lm.CharLanguageModel.load(str(out))
    assert lm.tokenizer.vocab_size > 10
