"""Moderation quality and speed: precision, recall and F1 per reason code on held-out data, and items/s.

    python bench/moderation.py            # uses the classifiers shipped in the package
    python bench/moderation.py --items 20000
    python bench/moderation.py --db 2000  # also content_moderate end to end on a scratch SQLite database

Quality is measured only on data the classifiers never trained on:
- the project's labelled set, test split (ids whose CRC32 % 10 < 3), Spanish and English;
- the YouTube Spam Collection video held out of training (Youtube03-LMFAO): the promotional check;
- the held-out half of the VADER Amazon review sentences rated negative: how many ordinary negative
  review sentences would be held or rejected (should be near zero: negative is not a violation).
A code counts as predicted when its score reaches the default policy's hold threshold.
Speed: `checks_run` (every check, both classifiers, no database) over a mix of all those texts, on
one core, after a warm-up.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tertulia.settings")
os.environ.setdefault("TERTULIA_HOME", "/tmp/tertulia-bench-moderation")

import django  # noqa: E402

django.setup()

from tertulia.moderation import codes  # noqa: E402
from tertulia.moderation.checks import run_checks  # noqa: E402
from tertulia.moderation.classifier import shipped  # noqa: E402
from tertulia.moderation.items import ContentItem  # noqa: E402
from tertulia.moderation.policy import decide, effective  # noqa: E402
from tertulia.moderation.services import checks_run, default_context  # noqa: E402
from tertulia.moderation.training import (  # noqa: E402
    YOUTUBE_TEST,
    default_data_dir,
    labelled_case,
    labelled_load,
    vader_load,
    vader_negative,
    youtube_load,
)

POLICY = effective()


def predicted(results) -> set[str]:
    return {r.code for r in results if r.score >= POLICY.threshold(r.code)[0]}


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def labelled_table(rows, spam, toxicity, language: str | None) -> list[str]:
    counts = {code: [0, 0, 0] for code in codes.REASON_CODES}
    clean_total = clean_flagged = 0
    misses = []
    for row in rows:
        if language and row["language"] != language:
            continue
        case = labelled_case(row, spam_model=spam, toxicity_model=toxicity)
        got = predicted(run_checks(case.item, case.context)[1])
        want = set(row["labels"])
        for code in codes.REASON_CODES:
            tp, fp, fn = counts[code]
            counts[code] = [tp + (code in got and code in want), fp + (code in got and code not in want),
                            fn + (code not in got and code in want)]
        if not want:
            clean_total += 1
            clean_flagged += bool(got)
        if got != want:
            misses.append((row["id"], sorted(want), sorted(got)))
    lines = []
    for code in codes.REASON_CODES:
        tp, fp, fn = counts[code]
        p, r, f = prf(tp, fp, fn)
        lines.append(f"  {code:<20} {tp + fn:>5} {p:>9.2f} {r:>7.2f} {f:>6.2f}")
    tps = sum(c[0] for c in counts.values())
    fps = sum(c[1] for c in counts.values())
    fns = sum(c[2] for c in counts.values())
    p, r, f = prf(tps, fps, fns)
    lines.append(f"  {'micro average':<20} {tps + fns:>5} {p:>9.2f} {r:>7.2f} {f:>6.2f}")
    lines.append(f"  clean items flagged: {clean_flagged}/{clean_total}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--items", type=int, default=10000, help="items for the speed run")
    parser.add_argument("--split", default="test", choices=["test", "train"], help="labelled split to score")
    parser.add_argument("--db", type=int, default=0, help="also time content_moderate on this many items, with "
                        "history, in a scratch SQLite database (TERTULIA_HOME must be a scratch directory)")
    args = parser.parse_args()
    spam, toxicity = shipped("spam"), shipped("toxicity")
    rows = labelled_load(args.data, split=args.split)

    header = f"  {'code':<20} {'n':>5} {'precision':>9} {'recall':>7} {'F1':>6}"
    for language in ("es", "en", None):
        name = {"es": "Spanish", "en": "English", None: "both"}[language]
        subset = [r for r in rows if language is None or r["language"] == language]
        print(f"\nLabelled set, {args.split} split, {name} ({len(subset)} items)")
        print(header)
        print("\n".join(labelled_table(subset, spam, toxicity, language)))

    # History-based codes have few held-out items; these checks are rules with nothing learned, so the
    # whole set is shown too (the train split was read while writing the rules: not a held-out figure).
    history_codes = (codes.REPETITION, codes.MULTIPLE_IDENTITIES, codes.IMPERSONATION)
    everything = labelled_load(args.data)
    print(f"\nHistory-based codes on the whole labelled set, train + test ({len(everything)} items)")
    print(header)
    lines = labelled_table(everything, spam, toxicity, None)
    print("\n".join(line for line in lines if line.split()[0] in history_codes))

    context = default_context()
    youtube = youtube_load(args.data, YOUTUBE_TEST)
    tp = fp = fn = tn = 0
    for text, is_spam in youtube:
        results = checks_run(ContentItem(kind="comment", text=text, language="en"), context=context)
        got = any(r.code == codes.PROMOTIONAL and r.score >= POLICY.threshold(codes.PROMOTIONAL)[0] for r in results)
        tp += got and is_spam
        fp += got and not is_spam
        fn += (not got) and is_spam
        tn += (not got) and not is_spam
    p, r, f = prf(tp, fp, fn)
    print(f"\nYouTube Spam Collection, held-out video {YOUTUBE_TEST[0]} ({len(youtube)} comments; spam {tp + fn})")
    print(header)
    print(f"  {'promotional':<20} {tp + fn:>5} {p:>9.2f} {r:>7.2f} {f:>6.2f}")

    negatives = vader_negative(args.data, part="test")
    flagged = 0
    reasons: dict[str, int] = {}
    for text in negatives:
        results = checks_run(ContentItem(kind="review", text=text, language="en"), context=context)
        action, triggered = decide(POLICY, results)
        if action != "publish":
            flagged += 1
            for code in triggered:
                reasons[code] = reasons.get(code, 0) + 1
    print(f"\nNegative is not a violation: held-out VADER Amazon sentences rated negative ({len(negatives)})")
    print(f"  held or rejected: {flagged} ({flagged / max(len(negatives), 1):.1%}); by code: {reasons}")

    texts = [r["text"] for r in labelled_load(args.data)] + [t for t, _ in youtube] + vader_load(args.data, part="test")
    items = [ContentItem(kind="review", text=texts[i % len(texts)], subject="Zapatillas Trail Aurora")
             for i in range(args.items)]
    for item in items[:500]:
        checks_run(item, context=context)
    started = time.perf_counter()
    cpu_started = time.process_time()
    for item in items:
        checks_run(item, context=context)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    average = sum(len(i.text) for i in items) / len(items)
    # Wall time depends on what else the machine runs; CPU time of this one process is the one-core figure.
    print(f"\nSpeed: checks_run over {len(items)} items (average {average:.0f} characters), one process:")
    print(f"  per CPU second (one core): {len(items) / cpu:,.0f} items/s ({cpu / len(items) * 1e6:.0f} µs per item)")
    print(f"  per wall-clock second:     {len(items) / elapsed:,.0f} items/s (load average {os.getloadavg()[0]:.1f})")
    if args.db:
        database_run(texts, args.db)


def database_run(texts: list[str], count: int) -> None:
    """content_moderate end to end: policy, history queries, checks, the judgement and decision rows."""
    from django.conf import settings
    from django.core.management import call_command

    from tertulia.core.services import store_create
    from tertulia.moderation.services import content_moderate

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3" or "bench" not in str(
            settings.DATABASES["default"]["NAME"]):
        print("\n--db needs the default scratch SQLite (TERTULIA_HOME=/tmp/tertulia-bench-moderation); skipped")
        return
    call_command("migrate", verbosity=0)
    from tertulia.core.models import Store

    Store.objects.filter(slug="bench-moderation").delete()
    store = store_create(slug="bench-moderation", name="Bench")
    names = [f"Persona {n}" for n in range(200)]
    started = time.perf_counter()
    cpu_started = time.process_time()
    for n in range(count):
        item = ContentItem(kind="review", text=texts[n % len(texts)], author_name=names[n % len(names)],
                           device_id=f"device-{n % 300}", ip=f"10.0.{n % 50}.1", subject="Zapatillas Trail Aurora")
        content_moderate(store=store, item=item, content_type="review", content_id=n + 1)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    print(f"\ncontent_moderate on SQLite, {count} items with growing history (judgement + decision written each):")
    print(f"  {count / elapsed:,.0f} items/s wall-clock, {count / cpu:,.0f} per CPU second of this process")


if __name__ == "__main__":
    main()
