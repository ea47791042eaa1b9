"""Listening classifiers: macro-F1 on held-out data, and texts per second on one core.

    python bench/classify.py
    python bench/classify.py --texts 50000

Quality only on items the shipped model never trained on (tertulia.listening.data: crc32(id) % 4 == 0):
- the project's labelled posts, Spanish and English: sentiment (3 classes) and intent (5 classes);
- the held-out quarter of the VADER Amazon review sentences: English sentiment (3 classes).
Speed: after a warm-up, pinned to one core, on a mix of all those texts: the model one text at a time,
the model on batches of 256, and batches with toxicity (moderation's abuse checks, gated as in
tertulia.listening.classify.toxicity) — the last is what `tertulia classify` does.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tertulia.settings")
os.environ.setdefault("TERTULIA_HOME", "/tmp/tertulia-bench-classify")

import django  # noqa: E402

django.setup()

from tertulia.listening import data  # noqa: E402
from tertulia.listening.classify import HEADS, classify_many, shipped  # noqa: E402
from tertulia.listening.train import macro_f1  # noqa: E402


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def report(name: str, items: list[data.Example]) -> None:
    predictions = shipped().predict_many([e.text for e in items])
    parts = [f"{name:<14} n={len(items):<4}"]
    for head in ("sentiment", "intent", "language"):
        gold = [getattr(e, head) for e in items]
        if any(g is None for g in gold):
            continue
        predicted = [getattr(p, head) for p in predictions]
        parts.append(f"{head} macro-F1 {macro_f1(gold, predicted, HEADS[head]):.3f}")
    print("  ".join(parts))


def rate(label: str, texts: list[str], run) -> None:
    run(texts[:512])  # warm-up: lexicons, model file, caches
    start = time.perf_counter()
    run(texts)
    elapsed = time.perf_counter() - start
    print(f"{label:<44} {len(texts) / elapsed:>9,.0f} texts/s  ({len(texts):,} texts in {elapsed:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=20_000)
    args = parser.parse_args()
    pin_one_core()
    posts = {lang: [e for e in data.posts(language=lang) if e.held_out] for lang in ("es", "en")}
    reviews = [e for e in data.vader() if e.held_out]
    print("Held-out quality (items never trained on)")
    report("posts es", posts["es"])
    report("posts en", posts["en"])
    report("vader amazon", reviews)
    pool = [e.text for e in posts["es"] + posts["en"] + reviews]
    texts = (pool * (args.texts // len(pool) + 1))[: args.texts]
    model = shipped()
    print(f"Speed on one core (mean text length {sum(map(len, texts)) / len(texts):.0f} characters)")
    rate("model, one text at a time", texts, lambda ts: [model.predict(t) for t in ts])
    rate("model, batches of 256", texts, lambda ts: [model.predict_many(ts[i:i + 256]) for i in range(0, len(ts), 256)])
    rate("model + toxicity, batches of 256 (command)", texts,
         lambda ts: [classify_many(ts[i:i + 256]) for i in range(0, len(ts), 256)])


if __name__ == "__main__":
    main()
