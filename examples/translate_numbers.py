"""Machine translation: numbers written in English words, translated into French words.

    python examples/translate_numbers.py                 # 10 epochs of 100 batches: 2-3 minutes on 2 cores
    python examples/translate_numbers.py --seconds 60    # a wall-time budget instead of a number of epochs
    python examples/translate_numbers.py --cell gru --beam 8

Data: random whole numbers from 0 to 999,999 and their spelled-out forms from
`num2words` on both sides ("three hundred and seventy-one thousand, nine hundred
and seventy-one" -> "trois cent soixante et onze mille neuf cent soixante et onze").
Numbers are drawn uniformly from the range, except that a tenth of them are
drawn from 0..999 so the short forms ("twenty-one" -> "vingt et un") are seen
too. The test numbers and the validation numbers are drawn first; the training
numbers are drawn from what is left, so no test number is ever trained on.

Tokens (word level):
- English (source): `fastrnn.data.WordTokenizer(punctuation="drop")`: the words
  only; the hyphens and commas carry nothing the words do not.
- French (target): words split at spaces, and hyphenated compounds split at
  their hyphens with the hyphen kept on the left piece: "quatre-vingt-dix-neuf"
  -> "quatre-", "vingt-", "dix-", "neuf". The vocabulary stays small (no token
  for each compound) and the text is rebuilt exactly: a piece that ends with
  "-" is glued to the next one, every other piece is followed by a space.
  Exact match is measured on the rebuilt string against `num2words(n, lang="fr")`.

Model (the functional `fastrnn.Model`):

    English ids -> Embedding(mask_zero) -> LSTM(return_state) -> states (h, c)
    <bos> French ids -> Embedding(mask_zero) -> LSTM(return_sequences, initial_state=states)
                     -> Dense(softmax over the French tokens)

trained with teacher forcing: the decoder reads the target shifted right
behind a start token ("<bos> y1 ... yn") and predicts "y1 ... yn <eos>";
the padding is masked out of the loss. The source is fed reversed (last word
first, as Sutskever et al. 2014 did) unless `--no-reverse`. `--cell gru` uses
GRUs (one state) instead of LSTMs.

Inference uses two more models built on the *same* layer objects (no weights
are copied): the encoder (English ids -> states) and one decoder step
((token, states) -> (next-token probabilities, new states)). Greedy decoding
feeds back the most likely token; beam search keeps the `--beam` best partial
translations by summed log-probability (a finished one keeps its score), both
batched over all test numbers at once. Beam width 1 is greedy decoding.

The learning rate follows a cosine from `--lr` to 0 over the training budget
(`--epochs`, or `--seconds` of wall time). An "epoch" here is `--steps`
batches drawn from the 20,000 training numbers (not a pass over them), so the
curves get a point every few seconds. With `--epochs` (the default) a run is
reproducible bit for bit from `--seed`; with `--seconds` how far it gets depends
on the machine. Prints the exact-match accuracy on the held-out test
numbers (greedy and beam), some translations and the errors, and saves the
learning curves to examples/out/translate_numbers.png.
"""
import argparse
import math
import os
import sys
import time

import numpy as np

import fastrnn as fr
from fastrnn import callbacks, layers, optimizers
from fastrnn.data import WordTokenizer, pad_sequences

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


# ---- data ------------------------------------------------------------------------------------

def english(n):
    from num2words import num2words
    return num2words(int(n))


def french(n):
    from num2words import num2words
    return num2words(int(n), lang="fr")


def draw_numbers(rng, count, max_number, small_fraction, exclude=()):
    """`count` distinct numbers in [0, max_number], none in `exclude`: uniform over the range,
    except that a `small_fraction` of the draws come from [0, min(999, max_number)]."""
    exclude = set(int(v) for v in exclude)
    free = max_number + 1 - len(exclude)
    if count > free:
        raise ValueError(f"asked for {count} numbers in [0, {max_number}] but only {free} are free")
    if count > free // 2:                         # a dense draw: pick from the free numbers directly
        pool = np.setdiff1d(np.arange(max_number + 1), np.fromiter(exclude, np.int64, len(exclude)))
        return rng.permutation(pool)[:count]
    small_top = min(999, max_number)
    small_free = small_top + 1 - sum(1 for v in exclude if v <= small_top)
    chosen, seen = [], set(exclude)
    small_left = int(small_free * 0.8)            # never use up the small numbers
    while len(chosen) < count:
        small = rng.random() < small_fraction and small_left > 0
        v = int(rng.integers(0, (small_top if small else max_number) + 1))
        if v not in seen:
            seen.add(v)
            chosen.append(v)
            if v <= small_top:
                small_left -= 1
    return np.array(chosen, np.int64)


def french_tokens(text):
    """Words at spaces; compounds at hyphens, the hyphen kept on the left piece."""
    tokens = []
    for word in text.split():
        pieces = word.split("-")
        tokens.extend(p + "-" for p in pieces[:-1])
        tokens.append(pieces[-1])
    return tokens


def french_text(tokens):
    """The inverse of `french_tokens`."""
    out = ""
    for i, tok in enumerate(tokens):
        out += tok
        if not tok.endswith("-") and i + 1 < len(tokens):
            out += " "
    return out


class TargetVocab:
    """French token ids: 0 <pad>, 1 <bos>, 2 <eos>, 3 <unk>, then the tokens of `texts` in sorted order."""

    PAD, BOS, EOS, UNK = 0, 1, 2, 3

    def __init__(self, texts):
        tokens = sorted({t for text in texts for t in french_tokens(text)})
        self.tokens = ["<pad>", "<bos>", "<eos>", "<unk>"] + tokens
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self):
        return len(self.tokens)

    def encode(self, text):
        return [self.ids.get(t, self.UNK) for t in french_tokens(text)]

    def decode(self, ids):
        """Text from ids up to the first <eos> (<pad> and <bos> skipped)."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i > self.BOS:
                out.append(self.tokens[i])
        return french_text(out)


class Dataset:
    """Numbers, their English and French forms, and the arrays the model takes."""

    def __init__(self, numbers, src_tok, tgt_vocab, reverse):
        self.numbers = np.asarray(numbers)
        self.english = [english(n) for n in self.numbers]
        self.french = [french(n) for n in self.numbers]
        self.src = [ids[::-1] if reverse else ids for ids in src_tok.encode_batch(self.english)]
        self.tgt = [tgt_vocab.encode(t) for t in self.french]

    def __len__(self):
        return len(self.numbers)

    def arrays(self, index=None):
        """([encoder ids, decoder input], decoder target), each padded to its own longest row."""
        index = range(len(self)) if index is None else index
        src = pad_sequences([self.src[i] for i in index], padding="post", dtype="int64")
        dec_in = pad_sequences([[TargetVocab.BOS] + self.tgt[i] for i in index], padding="post", dtype="int64")
        dec_out = pad_sequences([self.tgt[i] + [TargetVocab.EOS] for i in index], padding="post", dtype="int64")
        return [src, dec_in], dec_out


class Batches:
    """Training batches, endlessly: shuffle, sort pools of 32 batches by length (little padding),
    cut, and serve the batches in random order. Each `iter()` continues the same stream."""

    def __init__(self, data, batch_size, seed):
        self.data, self.batch_size = data, batch_size
        self.rng = np.random.default_rng(seed)
        self.lengths = np.array([len(t) for t in data.tgt]) * 100 + np.array([len(s) for s in data.src])
        self._stream = self._generate()

    def _generate(self):
        bs = self.batch_size
        while True:
            order = self.rng.permutation(len(self.data))
            pool = 32 * bs
            for start in range(0, len(order), pool):
                chunk = order[start:start + pool]
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
                batches = [chunk[i:i + bs] for i in range(0, len(chunk), bs)]
                for k in self.rng.permutation(len(batches)):
                    yield tuple(self.data.arrays(batches[k]))

    def __iter__(self):
        return self._stream


# ---- models ----------------------------------------------------------------------------------

def build_models(src_vocab, tgt_vocab, units=256, embed=64, cell="lstm", seed=0):
    """(training model, encoder model, decoder-step model); the three share their layers."""
    Cell = {"lstm": layers.LSTM, "gru": layers.GRU}[cell]
    n_states = 2 if cell == "lstm" else 1

    enc_in = fr.Input((None,), dtype="int64", name="english")
    enc_embed = layers.Embedding(src_vocab, embed, mask_zero=True, name="enc_embed")
    encoder = Cell(units, return_state=True, name="encoder")
    states = encoder(enc_embed(enc_in))[1:]

    dec_in = fr.Input((None,), dtype="int64", name="french_in")
    dec_embed = layers.Embedding(tgt_vocab, embed, mask_zero=True, name="dec_embed")
    decoder = Cell(units, return_sequences=True, return_state=True, name="decoder")
    project = layers.Dense(tgt_vocab, activation="softmax", name="next_token")
    seq = decoder(dec_embed(dec_in), initial_state=states)[0]
    train_model = fr.Model([enc_in, dec_in], project(seq), name="translator", seed=seed)

    encoder_model = fr.Model(enc_in, states, name="encoder_model")

    tok_in = fr.Input((1,), dtype="int64", name="token")
    state_ins = [fr.Input((units,), name=f"state_{k}") for k in range(n_states)]
    step_out = decoder(dec_embed(tok_in), initial_state=state_ins)
    step_model = fr.Model([tok_in] + state_ins, [project(step_out[0])] + list(step_out[1:]), name="decoder_step")
    return train_model, encoder_model, step_model


class Translator:
    """Greedy and beam-search decoding with the encoder and decoder-step models."""

    def __init__(self, encoder_model, step_model, max_len):
        self.encoder_model, self.step_model, self.max_len = encoder_model, step_model, max_len

    def _encode(self, src):
        states = self.encoder_model.predict_on_batch(src)
        return [states] if isinstance(states, np.ndarray) else list(states)

    def _step(self, tokens, states):
        out = self.step_model.predict_on_batch([tokens[:, None]] + states)
        probs, states = out[0][:, 0], list(out[1:])
        with np.errstate(divide="ignore"):
            logp = np.log(probs.astype(np.float64))
        logp[:, [TargetVocab.PAD, TargetVocab.BOS]] = -np.inf   # never targets
        return logp, states

    def greedy(self, src):
        """Token ids (B, steps) by feeding back the most likely token."""
        states = self._encode(src)
        tokens = np.full(len(src), TargetVocab.BOS, np.int64)
        done = np.zeros(len(src), bool)
        out = []
        for _ in range(self.max_len):
            logp, states = self._step(tokens, states)
            tokens = np.where(done, TargetVocab.EOS, np.argmax(logp, axis=1))
            out.append(tokens)
            done |= tokens == TargetVocab.EOS
            if done.all():
                break
        return np.stack(out, axis=1)

    def beam(self, src, width=4):
        """Token ids (B, steps) of the best of `width` hypotheses by summed log-probability.

        Every row of the batch has `width` hypotheses, all decoded in one batch of B*width
        rows. Each step extends every live hypothesis by every token, keeps the `width`
        best (score, hypothesis) pairs per row (a stable sort: ties go to the earlier
        hypothesis and the lower token id, as argmax does), and a hypothesis that produced
        <eos> is carried on unchanged with its score. Width 1 is greedy decoding."""
        B, K = len(src), width
        states = [np.repeat(s, K, axis=0) for s in self._encode(src)]
        score = np.full((B, K), -np.inf)
        score[:, 0] = 0.0                           # one live hypothesis to start from
        tokens = np.full(B * K, TargetVocab.BOS, np.int64)
        done = np.zeros((B, K), bool)
        history = np.zeros((B, K, 0), np.int64)
        rows = np.arange(B)[:, None]
        for _ in range(self.max_len):
            logp, states = self._step(tokens, states)
            V = logp.shape[1]
            logp = logp.reshape(B, K, V)
            # a finished hypothesis has one continuation, <eos>, at no cost
            logp[done] = -np.inf
            logp[done, TargetVocab.EOS] = 0.0
            cand = (score[:, :, None] + logp).reshape(B, K * V)
            best = np.argsort(-cand, axis=1, kind="stable")[:, :K]
            parent, token = best // V, best % V
            score = cand[rows, best]
            history = np.concatenate([history[rows, parent], token[:, :, None]], axis=2)
            done = done[rows, parent] | (token == TargetVocab.EOS)
            flat_parent = (parent + np.arange(B)[:, None] * K).reshape(-1)
            states = [s[flat_parent] for s in states]
            tokens = token.reshape(-1)
            if done[:, 0].all() or done.all():
                # hypotheses are sorted by score and a finished one never gains, so once the
                # best one of every row is finished nothing can overtake it
                break
        return history[:, 0]

    def translate(self, src, beam=1, batch_size=1024):
        """Decoded ids for every row of `src` (beam=1: greedy)."""
        outs = []
        for start in range(0, len(src), batch_size):
            part = src[start:start + batch_size]
            outs.append(self.greedy(part) if beam == 1 else self.beam(part, beam))
        width = max(o.shape[1] for o in outs)
        return np.concatenate([np.pad(o, ((0, 0), (0, width - o.shape[1])), constant_values=TargetVocab.EOS)
                               for o in outs])


def exact_match(translator, data, tgt_vocab, beam=1):
    """(share of exact translations, list of decoded strings)."""
    (src, _), _ = data.arrays()
    decoded = [tgt_vocab.decode(row) for row in translator.translate(src, beam=beam)]
    return float(np.mean([d == t for d, t in zip(decoded, data.french)])), decoded


class Budget(callbacks.Callback):
    """Cosine learning rate from `lr` to 0 over the budget (wall seconds or steps), stops at its end."""

    def __init__(self, lr, seconds=None, total_steps=None):
        super().__init__()
        self.lr, self.seconds, self.total_steps = lr, seconds, total_steps
        self.step = 0
        self.start = None

    def progress(self):
        if self.seconds is not None:
            return (time.perf_counter() - self.start) / self.seconds
        return self.step / self.total_steps

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        p = min(self.progress(), 1.0)
        self.model.optimizer.learning_rate = self.lr * 0.5 * (1 + math.cos(math.pi * p))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.seconds is not None and self.progress() >= 1.0:
            self.model.stop_training = True


class ExactMatch(callbacks.Callback):
    """Greedy exact match on the validation numbers after every epoch (kept in `self.history`)."""

    def __init__(self, translator, data, tgt_vocab):
        super().__init__()
        self.translator, self.data, self.tgt_vocab = translator, data, tgt_vocab
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        acc, _ = exact_match(self.translator, self.data, self.tgt_vocab)
        self.history.append((epoch + 1, acc))
        if logs is not None:
            logs["val_exact_match"] = acc


# ---- the run ---------------------------------------------------------------------------------

def plot_curves(history, exact, path, title, xlabel="epoch"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h = history.history
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    n = len(h["loss"])
    axes[0].plot(range(1, n + 1), h["loss"], label="train (teacher forcing)")
    if "val_loss" in h:
        axes[0].plot(range(1, len(h["val_loss"]) + 1), h["val_loss"], label="validation")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("cross-entropy per token")
    axes[1].plot(range(1, n + 1), h["accuracy"], label="token accuracy (train)")
    if "val_accuracy" in h:
        axes[1].plot(range(1, len(h["val_accuracy"]) + 1), h["val_accuracy"], label="token accuracy (validation)")
    if exact:
        e, a = zip(*exact)
        axes[1].plot(e, a, marker=".", label="exact match, greedy (validation)")
    axes[1].set_ylim(0, 1.01)
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    """Run the example with command-line arguments `argv`; returns the results as a dict."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10, help="epochs of --steps batches (default 10)")
    p.add_argument("--seconds", type=float, default=None,
                   help="train for this many seconds of wall time instead of --epochs")
    p.add_argument("--steps", type=int, default=100, help="batches per epoch (default 100)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (Adam), cosine to 0")
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--no-reverse", action="store_true", help="feed the English words in their order")
    p.add_argument("--max-number", type=int, default=999_999)
    p.add_argument("--small-fraction", type=float, default=0.1, help="share of numbers drawn from 0..999")
    p.add_argument("--train-size", type=int, default=20_000, help="training numbers (default 20000)")
    p.add_argument("--val-size", type=int, default=500)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--beam", type=int, default=4, help="beam width (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--examples", type=int, default=8, help="test translations to print")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--verbose", type=int, default=2, help="fit's verbosity: 0, 1 (bar) or 2 (line per epoch)")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    test_numbers = draw_numbers(rng, args.test_size, args.max_number, args.small_fraction)
    val_numbers = draw_numbers(rng, args.val_size, args.max_number, args.small_fraction, exclude=test_numbers)
    train_numbers = draw_numbers(rng, args.train_size, args.max_number, args.small_fraction,
                                 exclude=np.concatenate([test_numbers, val_numbers]))
    assert not (set(train_numbers.tolist()) & set(test_numbers.tolist()))

    train_en = [english(n) for n in train_numbers]
    src_tok = WordTokenizer(punctuation="drop").fit(train_en)
    tgt_vocab = TargetVocab([french(n) for n in train_numbers])
    reverse = not args.no_reverse
    train = Dataset(train_numbers, src_tok, tgt_vocab, reverse)
    val = Dataset(val_numbers, src_tok, tgt_vocab, reverse)
    test = Dataset(test_numbers, src_tok, tgt_vocab, reverse)
    max_len = max(len(t) for t in train.tgt) + 3
    t_data = time.perf_counter() - t_start
    print(f"numbers 0..{args.max_number:,}: {len(train):,} train, {len(val):,} validation, {len(test):,} test "
          f"(disjoint); vocabularies: {len(src_tok)} English, {len(tgt_vocab)} French tokens; "
          f"data made in {t_data:.1f} s")
    print(f"  e.g. {train.english[0]!r} -> {train.french[0]!r}\n"
          f"       tokens {src_tok.tokenize(train.english[0])} -> {french_tokens(train.french[0])}")

    model, encoder_model, step_model = build_models(len(src_tok), len(tgt_vocab), args.units, args.embed,
                                                    args.cell, args.seed)
    model.compile(optimizers.Adam(args.lr, clipnorm=1.0), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    if args.verbose:
        model.summary()
    translator = Translator(encoder_model, step_model, max_len)
    exact_cb = ExactMatch(translator, val, tgt_vocab)
    if args.seconds is None:
        budget = Budget(args.lr, total_steps=args.epochs * args.steps)
        epochs = args.epochs
    else:
        budget = Budget(args.lr, seconds=args.seconds)
        epochs = 10 ** 6
    print(f"training: {'%g s' % args.seconds if args.seconds else '%d epochs' % args.epochs} of "
          f"{args.steps} batches of {args.batch_size}, {args.cell.upper()} {args.units} units, "
          f"source {'reversed' if reverse else 'in order'}")
    t0 = time.perf_counter()
    history = model.fit(Batches(train, args.batch_size, args.seed), epochs=epochs, steps_per_epoch=args.steps,
                        validation_data=tuple(val.arrays()), callbacks=[budget, exact_cb],
                        verbose=args.verbose, seed=args.seed)
    t_train = time.perf_counter() - t0
    n_seen = budget.step * args.batch_size
    print(f"trained {t_train:.0f} s: {budget.step:,} batches, {n_seen:,} sentence pairs "
          f"({n_seen / max(len(train), 1):.1f} passes over the training numbers)")

    t0 = time.perf_counter()
    greedy_acc, greedy_out = exact_match(translator, test, tgt_vocab, beam=1)
    t_greedy = time.perf_counter() - t0
    t0 = time.perf_counter()
    beam_acc, beam_out = exact_match(translator, test, tgt_vocab, beam=args.beam)
    t_beam = time.perf_counter() - t0
    print(f"\ntest exact match on {len(test):,} held-out numbers: greedy {greedy_acc:.2%} ({t_greedy:.1f} s), "
          f"beam {args.beam} {beam_acc:.2%} ({t_beam:.1f} s)")
    small = test.numbers <= 999
    if small.any() and not small.all():
        ok = np.array([d == t for d, t in zip(beam_out, test.french)])
        print(f"  beam: {ok[small].mean():.2%} of the {small.sum()} numbers below 1000, "
              f"{ok[~small].mean():.2%} of the {(~small).sum()} from 1000 up")

    print("\nexamples (beam):")
    for i in range(min(args.examples, len(test))):
        mark = "ok" if beam_out[i] == test.french[i] else f"WRONG, expected {test.french[i]!r}"
        print(f"  {test.numbers[i]:>7,}  {test.english[i]}\n           -> {beam_out[i]}   [{mark}]")
    wrong = [i for i in range(len(test)) if beam_out[i] != test.french[i]]
    if wrong:
        print(f"errors (beam), {len(wrong)} of {len(test)}, the first ones:")
        for i in wrong[:5]:
            print(f"  {test.numbers[i]:>7,}  got      {beam_out[i]}\n           expected {test.french[i]}")

    plot = None
    if not args.no_plot:
        plot = os.path.join(OUT, "translate_numbers.png")
        plot_curves(history, exact_cb.history, plot,
                    f"English -> French numbers: test exact match greedy {greedy_acc:.1%}, "
                    f"beam {args.beam} {beam_acc:.1%}",
                    xlabel=f"epoch ({args.steps} batches of {args.batch_size})")
        print(f"\nlearning curves: {os.path.relpath(plot)}")
    total = time.perf_counter() - t_start
    print(f"wall time {total:.0f} s")
    return {"greedy": greedy_acc, "beam": beam_acc, "history": history.history, "exact": exact_cb.history,
            "model": model, "translator": translator, "test": test, "tgt_vocab": tgt_vocab,
            "train_seconds": t_train, "wall": total, "plot": plot}


if __name__ == "__main__":
    main()
