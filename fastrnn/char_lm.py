"""A character-level LSTM language model: what `python -m fastrnn demo`,
`train-lm` and `generate` run.

    text -> CharTokenizer ids -> next-character windows (seq_len)
         -> Sequential[Embedding, LSTM(return_sequences=True), Dense(vocab)]
    trained with Adam on SparseCategoricalCrossentropy(from_logits=True)

Perplexity is exp(mean cross-entropy per character) on held-out text (the
last `val_fraction` of it, never trained on). Generation runs a stateful,
batch-1 copy of the network one character at a time (the engine's single-step
path) and samples from softmax(logits / temperature).

A saved model is two files: the model (`PATH`, fastrnn's zip format) and its
vocabulary (`PATH.vocab.json`).
"""
import glob
import os
import signal
import sys
import time

import numpy as np

from . import callbacks, layers, losses, optimizers
from .data import CharTokenizer, load_tokenizer, shifted_windows
from .models import Sequential, load_model


def stdlib_corpus(max_chars=800_000):
    """Python source text that every installation has: the standard library's own
    top-level modules, in name order, until `max_chars` characters."""
    root = os.path.dirname(os.__file__)
    parts, total = [], 0
    for path in sorted(glob.glob(os.path.join(root, "*.py"))):
        name = os.path.basename(path)
        if name.startswith(("test", "_test", "__")):
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    text = "\n".join(parts)[:max_chars]
    if len(text) < 10_000:
        raise RuntimeError(f"the standard library source under {root} is missing or too small "
                           f"({len(text)} characters); pass a text file to train-lm instead")
    return text


def read_text(path):
    """A training text from a file, with clear errors for the usual mistakes."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"FILE: {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"FILE: {path!r} is a directory, expected a text file")
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if len(text) < 1000:
        raise ValueError(f"FILE: {path!r} has {len(text)} characters; a language model needs at least 1000")
    return text


def build_network(vocab_size, embed=48, units=256, seed=0, stateful=False):
    """The network; stateful=True makes the batch-1 generator that carries its state."""
    return Sequential([
        layers.Embedding(vocab_size, embed),
        layers.LSTM(units, return_sequences=True, stateful=stateful),
        layers.Dense(vocab_size),
    ], name="char_lm", seed=seed)


class CharLanguageModel:
    """A tokenizer and a compiled network, with training, evaluation and sampling."""

    def __init__(self, tokenizer, model):
        self.tokenizer = tokenizer
        self.model = model

    @classmethod
    def new(cls, text, embed=48, units=256, lr=3e-3, max_tokens=128, seed=0):
        tok = CharTokenizer(max_tokens=max_tokens).fit([text])
        model = build_network(tok.vocab_size, embed, units, seed)
        model.build((None, None))
        model.compile(optimizer=optimizers.Adam(lr, clipnorm=1.0),
                      loss=losses.SparseCategoricalCrossentropy(from_logits=True))
        return cls(tok, model)

    # ---- data ----------------------------------------------------------------
    def windows(self, text, seq_len):
        ids = np.asarray(self.tokenizer.encode(text), np.int32)
        return shifted_windows(ids, seq_len)

    def split(self, text, seq_len, val_fraction=0.05):
        """Training and validation windows; validation is the end of the text."""
        cut = int(len(text) * (1 - val_fraction))
        return self.windows(text[:cut], seq_len), self.windows(text[cut:], seq_len)

    # ---- evaluation ------------------------------------------------------------
    def perplexity(self, x, y, batch_size=128):
        """exp(mean cross-entropy per character) over the windows (x, y)."""
        loss = self.model.evaluate(x, y, batch_size=batch_size, verbose=0)
        loss = loss[0] if isinstance(loss, (list, tuple)) else loss
        return float(np.exp(loss))

    # ---- training ----------------------------------------------------------------
    def train(self, x, y, *, seconds=None, epochs=None, batch_size=64, seed=0, checkpoint=None,
              checkpoint_every=30.0, out=sys.stdout):
        """Train on windows (x, y) for a time budget or a number of epochs, drawing a
        progress line with the loss and characters per second. With `checkpoint`, the
        model is saved there (atomically) every `checkpoint_every` seconds and at the end.
        Ctrl-C stops after the current batch; the last checkpoint stays intact.
        Returns a dict: steps, seconds, chars, final smoothed loss, interrupted."""
        if seconds is None and epochs is None:
            raise ValueError("train: expected seconds or epochs, got neither")
        rng = np.random.default_rng(seed)
        n = len(x)
        steps_per_epoch = max(1, n // batch_size)
        stop = {"now": False}

        def on_sigint(signum, frame):
            stop["now"] = True

        old = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
        t0 = last_save = time.perf_counter()
        step, chars, smooth, interrupted = 0, 0, None, False
        try:
            epoch = 0
            while not stop["now"]:
                order = rng.permutation(n)
                for b in range(steps_per_epoch):
                    idx = np.sort(order[b * batch_size:(b + 1) * batch_size])
                    loss = self.model.train_on_batch(x[idx], y[idx])
                    loss = float(loss[0] if isinstance(loss, (list, tuple)) else loss)
                    step += 1
                    chars += idx.size * x.shape[1]
                    smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
                    now = time.perf_counter()
                    elapsed = now - t0
                    if out is not None and (step % 5 == 0 or step == 1):
                        budget = f"/{seconds:.0f}s" if seconds else ""
                        out.write(f"\r  step {step:5d}  epoch {epoch + 1}  loss {smooth:.3f}  "
                                  f"{chars / elapsed / 1e3:7.1f}k chars/s  {elapsed:5.1f}s{budget}   ")
                        out.flush()
                    if checkpoint and now - last_save >= checkpoint_every:
                        self.save(checkpoint)
                        last_save = now
                    if stop["now"] or (seconds is not None and elapsed >= seconds):
                        stop["now"] = True
                        break
                epoch += 1
                if epochs is not None and epoch >= epochs:
                    break
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
        interrupted = stop["now"] and (seconds is None or time.perf_counter() - t0 < seconds)
        if out is not None:
            out.write("\n")
        if checkpoint:
            self.save(checkpoint)
        return {"steps": step, "seconds": time.perf_counter() - t0, "chars": chars, "loss": smooth,
                "interrupted": interrupted}

    # ---- sampling ------------------------------------------------------------------
    def generate(self, prime="", length=200, temperature=0.8, seed=None):
        """`prime` followed by `length` sampled characters."""
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"length: expected a non-negative int, got {length!r}")
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
        rng = np.random.default_rng(seed)
        emb, lstm, dense = self.model.layers
        gen = build_network(self.tokenizer.vocab_size, emb.output_dim, lstm.units, stateful=True)
        gen.build((1, None))
        gen.set_weights(self.model.get_weights())
        ids = self.tokenizer.encode(prime) or [self.tokenizer.token_to_id("\n")
                                               if "\n" in self.tokenizer.vocab else 2]
        logits = gen.predict_on_batch(np.asarray([ids], np.int32))[0, -1]
        out = []
        for _ in range(length):
            z = logits.astype(np.float64) / temperature
            z[:2] = -np.inf                         # never sample padding or <unk>
            p = np.exp(z - z.max())
            p /= p.sum()
            nxt = int(rng.choice(p.size, p=p))
            out.append(nxt)
            logits = gen.predict_on_batch(np.asarray([[nxt]], np.int32))[0, -1]
        return prime + self.tokenizer.decode(out)

    # ---- files ------------------------------------------------------------------------
    def save(self, path):
        self.model.save(path)
        self.tokenizer.save(path + ".vocab.json")

    @classmethod
    def load(cls, path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"MODEL: {path!r} does not exist")
        vocab = path + ".vocab.json"
        if not os.path.exists(vocab):
            raise FileNotFoundError(f"MODEL: the vocabulary {vocab!r} saved with {path!r} is missing")
        return cls(load_tokenizer(vocab), load_model(path))


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def demo(seconds=60.0, out=sys.stdout, seed=0):
    """Train a character LSTM on the standard library's source and sample from it."""
    import fastrnn
    out.write(f"fastrnn {fastrnn.__version__} (SIMD {fastrnn.simd_isa()}, "
              f"{fastrnn.get_num_threads()} threads): a character-level LSTM language model\n")
    text = stdlib_corpus()
    lm = CharLanguageModel.new(text, seed=seed)
    (x, y), (xv, yv) = lm.split(text, seq_len=64)
    xv, yv = xv[:256], yv[:256]
    out.write(f"corpus: {len(text):,} characters of Python's standard library source, "
              f"{lm.tokenizer.vocab_size} symbols; {len(x):,} training windows of 64\n")
    before = lm.perplexity(xv, yv)
    out.write(f"validation perplexity before training: {before:.1f} "
              f"(a uniform guess over {lm.tokenizer.vocab_size} symbols scores {lm.tokenizer.vocab_size})\n")
    out.write(f"training for {seconds:.0f} s (Ctrl-C stops early):\n")
    stats = lm.train(x, y, seconds=seconds, batch_size=64, seed=seed, out=out)
    after = lm.perplexity(xv, yv)
    out.write(f"validation perplexity after {stats['steps']} steps ({stats['chars']:,} characters, "
              f"{stats['seconds']:.0f} s): {after:.2f}\n")
    for temp in (0.5, 0.9):
        sample = lm.generate("def ", length=300, temperature=temp, seed=seed)
        out.write(f"\n--- sample, temperature {temp} ---\n{sample}\n")
    return 0 if after < before / 4 else 1
