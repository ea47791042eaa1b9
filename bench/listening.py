"""Listening pipeline: a million posts through the term filter, then the matched ones through classification.

    python bench/listening.py                 # 1,000,000 posts, 2% of them mention a tracked term
    python bench/listening.py --posts 100000

Posts are synthetic but shaped like real ones: each is a real post text from the platforms' own test
payloads (tests/fixtures/listening/social_texts.jsonl: X/Twitter, Mastodon, Bluesky; links, @mentions,
#hashtags, emoji, many languages) or one of the project's Spanish/English posts, plus a varying
number so no two are alike. A fixed 2% get a tracked term written into them (in any case, with or
without accents, as a hashtag or an SKU). The store tracks 2,000 terms: a brand, 1,500 product names,
440 SKUs, hashtags, competitors and exclude rules. Generating posts is not timed; filtering is
`Matcher.mentions` per post; classification is `classify_many` with toxicity on batches of 256.
Pinned to one core.
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tertulia.settings")
os.environ.setdefault("TERTULIA_HOME", "/tmp/tertulia-bench-listening")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402

from tertulia.listening import data  # noqa: E402
from tertulia.listening.classify import classify_many  # noqa: E402
from tertulia.listening.matching import Matcher, Term  # noqa: E402

CHUNK = 50_000
MATCH_RATE = 0.02

_NOUNS = ["Zapatilla", "Camiseta", "Cafetera", "Mochila", "Chaqueta", "Lámpara", "Sartén", "Taza", "Jersey", "Bolso",
          "Sneaker", "Kettle", "Backpack", "Jacket", "Lamp", "Mug", "Sweater", "Blender", "Desk", "Pillow"]
_NAMES = ["Águila", "Brisa", "Cóndor", "Dársena", "Estela", "Faro", "Granito", "Halcón", "Índigo", "Jara", "Kiwi",
          "Lince", "Marea", "Nébula", "Ónix", "Pampa", "Quásar", "Roble", "Sauce", "Tundra", "Umbral", "Volcán"]
_MODELS = ["Trail", "Urban", "Pro", "Lite", "Max", "Mini", "Classic", "Eco", "Plus", "Air"]


def tracked_terms(rng: random.Random) -> list[Term]:
    terms = [Term("Tertulia Shop", "brand")]
    names = set()
    while len(names) < 1500:
        names.add(f"{rng.choice(_NOUNS)} {rng.choice(_MODELS)} {rng.choice(_NAMES)} {rng.randint(1, 99)}")
    terms += [Term(n, "product") for n in sorted(names)]
    terms += [Term(f"TRT-{i:05d}", "sku") for i in range(440)]
    terms += [Term(f"#Tertulia{n}", "hashtag") for n in _NAMES[:20]]
    terms += [Term(f"Competidor {n}", "competitor") for n in _NAMES[:20]]
    terms += [Term(f"Tertulia Shop {w}", "keyword", exclude=True) for w in ("empleo", "jobs", "sorteo falso")]
    return terms


def written(term: Term, rng: random.Random) -> str:
    """A term as a person would write it: any case, accents dropped or not, sometimes as a hashtag."""
    text = term.term
    choice = rng.random()
    if choice < 0.3:
        text = text.lower()
    elif choice < 0.45:
        text = text.upper()
    if rng.random() < 0.3:
        text = text.translate(str.maketrans("áéíóúÁÉÍÓÚ", "aeiouAEIOU"))
    if term.kind in ("brand", "product") and rng.random() < 0.15:
        text = "#" + text.replace(" ", "")
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=1_000_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(2026)
    social = [orjson.loads(line)["text"] for line in
              (ROOT / "tests/fixtures/listening/social_texts.jsonl").read_bytes().splitlines() if line.strip()]
    own = [e.text for e in data.posts(language="es") + data.posts(language="en")]
    terms = tracked_terms(rng)
    include = [t for t in terms if not t.exclude]
    start = time.perf_counter()
    matcher = Matcher(terms)
    print(f"{len(terms):,} tracked terms, automaton built in {time.perf_counter() - start:.3f} s")

    filtered = 0
    filter_seconds = 0.0
    matched_texts: list[str] = []
    planted = 0
    while filtered < args.posts:
        size = min(CHUNK, args.posts - filtered)
        posts = []
        for i in range(size):
            base = rng.choice(social) if rng.random() < 0.7 else rng.choice(own)
            text = f"{base} {filtered + i}"
            if rng.random() < MATCH_RATE:
                planted += 1
                words = text.split(" ")
                words.insert(rng.randint(0, len(words)), written(rng.choice(include), rng))
                text = " ".join(words)
            posts.append(text)
        begin = time.perf_counter()
        mentions = matcher.mentions
        found = [text for text in posts if mentions(text)]
        filter_seconds += time.perf_counter() - begin
        matched_texts.extend(found)
        filtered += size
    print(f"filter:   {filtered:,} posts in {filter_seconds:.2f} s = {filtered / filter_seconds:,.0f} posts/s "
          f"({len(matched_texts):,} matched, {planted:,} planted)")

    classify_many(matched_texts[:256])  # warm-up
    begin = time.perf_counter()
    negative = 0
    for i in range(0, len(matched_texts), 256):
        negative += sum(p.sentiment == "negative" for p in classify_many(matched_texts[i:i + 256]))
    seconds = time.perf_counter() - begin
    print(f"classify: {len(matched_texts):,} matched posts in {seconds:.2f} s = "
          f"{len(matched_texts) / seconds:,.0f} posts/s ({negative:,} negative)")
    print(f"end to end: {filtered / (filter_seconds + seconds):,.0f} posts/s on one core")


if __name__ == "__main__":
    main()
