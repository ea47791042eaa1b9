"""Train the built-in listening model and write `tertulia/listening/model.json`.

    python -m tertulia.listening.train [--data DIR] [--out FILE]

Deterministic (fixed order, full-batch Adam, no random initialisation): the same data gives the same
file. Trains on the non-held-out items only and records held-out figures in the model's info.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from tertulia.listening import data
from tertulia.listening.classify import DIM, HEADS, Model, features

ITERATIONS = 400
L2 = 2e-4
LEARNING_RATE = 0.05
VADER_WEIGHT = 0.5  # review sentences are not posts: they help English sentiment but should not dominate it


def _fit(slots: list[np.ndarray], labels: np.ndarray, weights: np.ndarray, classes: int):
    """Multinomial logistic regression with balanced classes; returns (DIM x classes weights, bias)."""
    lengths = np.array([len(s) for s in slots])
    cols = np.concatenate(slots)
    rows = np.repeat(np.arange(len(slots)), lengths)
    vals = np.repeat(1.0 / np.sqrt(np.maximum(lengths, 1)), lengths)
    used, inverse = np.unique(cols, return_inverse=True)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    counts = np.bincount(labels, weights=weights, minlength=classes)
    sample = weights * (weights.sum() / (classes * np.maximum(counts, 1e-9)))[labels]
    sample = sample / sample.sum()
    onehot = np.eye(classes)[labels]
    w = np.zeros((len(used), classes))
    b = np.zeros(classes)
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, ITERATIONS + 1):
        z = np.add.reduceat(w[inverse] * vals[:, None], starts) + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * sample[:, None]
        grad_w = np.stack([np.bincount(inverse, weights=g[rows, k] * vals, minlength=len(used))
                           for k in range(classes)], axis=1) + L2 * w
        grad_b = g.sum(axis=0)
        for param, grad, m, v in ((w, grad_w, m_w, v_w), (b, grad_b, m_b, v_b)):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            param -= LEARNING_RATE * (m / (1 - beta1 ** step)) / (np.sqrt(v / (1 - beta2 ** step)) + eps)
    full = np.zeros((DIM, classes), dtype=np.float32)
    full[used] = w
    # Tiny weights change no decision and cost bytes in the shipped file.
    full[np.abs(full) < 1e-3] = 0.0
    return full, b.astype(np.float32)


def macro_f1(gold: list[str], predicted: list[str], labels: tuple[str, ...]) -> float:
    scores = []
    for label in labels:
        tp = sum(1 for g, p in zip(gold, predicted, strict=True) if g == label and p == label)
        fp = sum(1 for g, p in zip(gold, predicted, strict=True) if g != label and p == label)
        fn = sum(1 for g, p in zip(gold, predicted, strict=True) if g == label and p != label)
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def evaluate(model: Model, examples: list[data.Example], head: str) -> float:
    gold = [getattr(e, head) for e in examples]
    predicted = [getattr(model.predict(e.text), head) for e in examples]
    return round(macro_f1(gold, predicted, HEADS[head]), 3)


def train(data_dir: Path = data.DEFAULT_DIR) -> Model:
    posts = data.posts(language="es", data_dir=data_dir) + data.posts(language="en", data_dir=data_dir)
    reviews = data.vader(data_dir=data_dir)
    everything = posts + reviews
    train_items = [e for e in everything if not e.held_out]
    slots = {e.id: features(e.text) for e in train_items}
    columns, biases = [], []
    for head, labels in HEADS.items():
        items = [e for e in train_items if getattr(e, head) is not None]
        weight = np.array([VADER_WEIGHT if e.source == "vader" else 1.0 for e in items])
        index = np.array([labels.index(getattr(e, head)) for e in items])
        w, b = _fit([slots[e.id] for e in items], index, weight, len(labels))
        columns.append(w)
        biases.append(b)
    model = Model(np.concatenate(columns, axis=1), np.concatenate(biases))
    held = [e for e in everything if e.held_out]
    info = {"trained_on": {"posts": sum(1 for e in train_items if e.source == "posts"),
                           "vader": sum(1 for e in train_items if e.source == "vader")},
            "held_out": {}}
    for language in ("es", "en"):
        items = [e for e in held if e.source == "posts" and e.language == language]
        info["held_out"][f"posts_{language}"] = {
            "items": len(items), "sentiment_macro_f1": evaluate(model, items, "sentiment"),
            "intent_macro_f1": evaluate(model, items, "intent"), "language_macro_f1": evaluate(model, items, "language")}
    items = [e for e in held if e.source == "vader"]
    info["held_out"]["vader_amazon"] = {"items": len(items), "sentiment_macro_f1": evaluate(model, items, "sentiment")}
    model.info = info
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data.DEFAULT_DIR)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("model.json"))
    args = parser.parse_args(argv)
    model = train(args.data)
    args.out.write_bytes(model.to_json())
    sys.stdout.write(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)\n")
    for name, figures in model.info["held_out"].items():
        sys.stdout.write(f"{name}: {figures}\n")


if __name__ == "__main__":
    main()
