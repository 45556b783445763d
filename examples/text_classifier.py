"""A binary text classifier (sentiment-style) on any labelled text file: a GRU over words or characters.

    python examples/text_classifier.py FILE [--level word|char]
    python examples/text_classifier.py --make-demo reviews.tsv     # writes a synthetic file to try it on

FILE holds one example per line, `label<TAB>text` (UTF-8): exactly two
distinct labels ("pos"/"neg", "1"/"0", ...; the first label in sorted order is
class 0 unless `--positive` names class 1). Lines without a tab or with an
empty text are skipped (and counted). The examples are shuffled and split
80% train, 10% validation, 10% test (seeded).

Model: `WordTokenizer` (lower-cased words, punctuation kept as tokens) or
`CharTokenizer`, fitted on the training texts only (`--vocab` caps the word
vocabulary; rarer words become `<unk>`), texts cut to their first `--maxlen`
tokens -> `Embedding(mask_zero=True)` -> `GRU` -> `Dense(1, sigmoid)`, binary
cross-entropy, batches of similar lengths from `BucketIterator`, the best
epoch on validation accuracy kept. Prints the test accuracy next to two
baselines: the majority class, and a naive Bayes on token counts (NumPy; it
ignores the order of the tokens). `--save PREFIX` writes `PREFIX.fastrnn` (the
model) and `PREFIX.tokenizer.json`. The learning curves go to
examples/out/text_classifier_curves.png.
"""
import argparse
import os
import sys
import time

import numpy as np

import fastrnn as fr
from fastrnn import callbacks, layers, losses, optimizers
from fastrnn.data import BucketIterator, CharTokenizer, WordTokenizer, pad_sequences

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def read_labelled(path, positive=None):
    """(texts, y, labels, skipped) from `label<TAB>text` lines; y is 0/1 (float32)."""
    texts, raw, skipped = [], [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            label, sep, text = line.partition("\t")
            if not sep or not text.strip() or not label.strip():
                skipped += bool(line.strip())
                continue
            raw.append(label.strip())
            texts.append(text)
    labels = sorted(set(raw))
    if len(labels) != 2:
        raise SystemExit(f"{path}: expected exactly 2 distinct labels, found {len(labels)}: {labels[:10]}")
    if positive is not None:
        if positive not in labels:
            raise SystemExit(f"--positive {positive!r} is not one of the labels {labels}")
        labels = [lab for lab in labels if lab != positive] + [positive]
    y = np.array([labels.index(lab) for lab in raw], np.float32)
    return texts, y, labels, skipped


def bag_of_tokens_baseline(ids, y, train, test, vocab_size, alpha=1.0):
    """Multinomial naive Bayes on token counts (the order of the tokens ignored): test accuracy."""
    counts = np.zeros((2, vocab_size))
    for i in train:
        np.add.at(counts[int(y[i])], ids[i], 1)
    log_prob = np.log((counts + alpha) / (counts + alpha).sum(axis=1, keepdims=True))
    log_prior = np.log(np.array([1 - y[train].mean(), y[train].mean()]))
    pred = [np.argmax(log_prob[:, ids[i]].sum(axis=1) + log_prior) for i in test]
    return float(np.mean(np.array(pred) == y[test]))


def make_demo(path, n=4000, seed=0):
    """A synthetic review file that a bag of words cannot solve: negation flips a sentiment word
    ("not bad" is positive) and in "X but Y" the clause after "but" decides."""
    rng = np.random.default_rng(seed)
    good = ["good", "great", "wonderful", "funny", "moving", "clever", "beautiful", "gripping", "superb"]
    bad = ["bad", "awful", "boring", "dull", "silly", "clumsy", "tedious", "ugly", "weak"]
    subjects = ["the film", "this movie", "the plot", "the acting", "the story", "the ending", "the music",
                "the cast", "the script", "the dialogue"]
    fillers = ["honestly", "i think", "overall", "to be fair", "in the end", "frankly", "", "", ""]

    def clause(positive):
        negate = rng.random() < 0.3
        pool = (bad if negate else good) if positive else (good if negate else bad)
        very = str(rng.choice(["very ", "really ", "quite ", "", ""]))
        adj = ("not " if negate else "") + very + str(rng.choice(pool))
        return f"{rng.choice(subjects)} was {adj}"

    lines = []
    for _ in range(n):
        positive = bool(rng.random() < 0.5)
        text = clause(positive)
        if rng.random() < 0.5:                               # "<the other side> but <the label's side>"
            text = clause(not positive) + " but " + text
        text = (str(rng.choice(fillers)) + " " + text).strip() + str(rng.choice([".", "!", ""]))
        lines.append(f"{'pos' if positive else 'neg'}\t{text}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", nargs="?", help="label<TAB>text lines")
    p.add_argument("--make-demo", metavar="PATH", help="write a synthetic review file to PATH and exit")
    p.add_argument("--level", choices=("word", "char"), default="word")
    p.add_argument("--positive", help="the label of class 1 (default: the second label in sorted order)")
    p.add_argument("--vocab", type=int, default=20000, help="word vocabulary cap (ids included)")
    p.add_argument("--maxlen", type=int, default=None, help="tokens kept per text (default: 200 words, 800 chars)")
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", metavar="PREFIX", help="save PREFIX.fastrnn and PREFIX.tokenizer.json")
    p.add_argument("--out", default=OUT, help="folder of the PNG (default examples/out)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args(argv)
    if args.make_demo:
        make_demo(args.make_demo, seed=args.seed)
        print(f"wrote {args.make_demo}; now run: python {sys.argv[0]} {args.make_demo}")
        return None
    if not args.file:
        p.error("give a FILE of label<TAB>text lines (or --make-demo PATH)")
    if not os.path.isfile(args.file):
        p.error(f"no such file: {args.file}")
    t0 = time.perf_counter()

    texts, y, labels, skipped = read_labelled(args.file, args.positive)
    n = len(texts)
    order = np.random.default_rng(args.seed).permutation(n)
    a, b = int(0.8 * n), int(0.9 * n)
    split = {"train": order[:a], "val": order[a:b], "test": order[b:]}
    if min(len(i) for i in split.values()) == 0:
        raise SystemExit(f"{args.file}: {n} examples are too few to split 80/10/10")
    print(f"{n} examples ({skipped} lines skipped), labels {labels[0]!r}=0 / {labels[1]!r}=1 "
          f"({y.mean():.1%} class 1); {len(split['train'])} train / {len(split['val'])} val / "
          f"{len(split['test'])} test")

    maxlen = args.maxlen or (200 if args.level == "word" else 800)
    tok = (WordTokenizer(max_tokens=args.vocab) if args.level == "word" else CharTokenizer())
    tok.fit([texts[i] for i in split["train"]])
    ids = [np.array(tok.encode(t)[:maxlen], np.int32) for t in texts]

    def pad(idx):
        return pad_sequences([ids[i] for i in idx], padding="post")

    print(f"{args.level} level: vocabulary {tok.vocab_size}, "
          f"mean length {np.mean([len(s) for s in ids]):.1f} tokens (cut at {maxlen})")

    train = BucketIterator([ids[i] for i in split["train"]], y[split["train"], None],
                           batch_size=args.batch_size, seed=args.seed, return_lengths=False)
    model = fr.Sequential([
        layers.Input((None,), dtype="int32"),
        layers.Embedding(tok.vocab_size, args.embed, mask_zero=True),
        layers.GRU(args.units),
        layers.Dense(1, activation="sigmoid"),
    ], seed=args.seed)
    steps = args.epochs * len(train)
    model.compile(optimizers.Adam(optimizers.schedules.CosineDecay(args.lr, steps, alpha=0.05), clipnorm=1.0),
                  losses.BinaryCrossentropy(), metrics=["accuracy"])
    history = model.fit(train, epochs=args.epochs, verbose=args.verbose, seed=args.seed,
                        validation_data=(pad(split["val"]), y[split["val"], None]),
                        callbacks=[callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                                           patience=args.epochs, restore_best_weights=True)])
    y_test = y[split["test"]]
    prob = model.predict(pad(split["test"]), batch_size=256)[:, 0]
    acc = float(np.mean((prob > 0.5) == (y_test > 0.5)))
    majority = float(max(y_test.mean(), 1 - y_test.mean()))
    bag = bag_of_tokens_baseline(ids, y, split["train"], split["test"], tok.vocab_size)
    print(f"test accuracy {acc:.4f} (majority class {majority:.4f}, "
          f"bag-of-{args.level}s naive Bayes {bag:.4f})")
    if args.save:
        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
        model.save(args.save + ".fastrnn")
        tok.save(args.save + ".tokenizer.json")
        print(f"saved {args.save}.fastrnn and {args.save}.tokenizer.json")
    if not args.no_plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        h = history.history
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
        e = np.arange(1, len(h["loss"]) + 1)
        a1.plot(e, h["loss"], label="train"); a1.plot(e, h["val_loss"], label="validation")
        a1.set_xlabel("epoch"); a1.set_ylabel("binary cross-entropy"); a1.legend()
        a2.plot(e, h["accuracy"], label="train"); a2.plot(e, h["val_accuracy"], label="validation")
        a2.axhline(majority, color="gray", ls="--", label="majority class")
        a2.set_xlabel("epoch"); a2.set_ylabel("accuracy"); a2.legend()
        fig.suptitle(f"{os.path.basename(args.file)}: {args.level}-level GRU, test accuracy {acc:.1%}")
        fig.tight_layout()
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "text_classifier_curves.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        print(f"saved {path}")
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    return {"accuracy": acc, "majority": majority, "bag_of_tokens": bag, "history": history.history}


if __name__ == "__main__":
    main()
