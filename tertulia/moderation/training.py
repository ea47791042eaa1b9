"""Training data and training runs for the moderation classifiers (`tertulia moderation train`).

Data (see tests/fixtures/moderation/README.md): the project's labelled Spanish and English items
(JSON lines, split train/test by a hash of the id), the UCI YouTube Spam Collection (CC BY 4.0;
Psy and KatyPerry train, LMFAO is held out), and Amazon review sentences from the VADER study (MIT;
half trains as ordinary, often negative, review language, half is held out). Only training parts
are ever used here; the bench reads the held-out parts.

Heads: the "spam" model has `promotional` and `off_topic`; the "toxicity" model has `attack`
(insult, personal attack, hate) and `rudeness`. A store retrains from the same data plus its
moderators' decisions (the newest human decision on each judged text), weighed three times.
"""

import csv
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tertulia.moderation import codes
from tertulia.moderation.checks import CheckContext, Member, PriorItem
from tertulia.moderation.classifier import Classifier, Dataset, features, shipped, train
from tertulia.moderation.items import ContentItem
from tertulia.moderation.normalize import fold, normalize, skeleton

SPAM_HEADS = ["promotional", "off_topic"]
TOXICITY_HEADS = ["attack", "rudeness"]
YOUTUBE_TRAIN = ("Youtube01-Psy.csv", "Youtube02-KatyPerry.csv")
YOUTUBE_TEST = ("Youtube03-LMFAO.csv",)
BENCH_NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


def default_data_dir() -> Path:
    """Where the repository keeps the training data (absent in an installed package)."""
    return Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "moderation"


def labelled_load(data_dir: Path, *, split: str | None = None) -> list[dict]:
    rows: list[dict] = []
    for language in codes.LANGUAGES:
        path = data_dir / f"labelled_{language}.jsonl"
        if not path.exists():
            continue
        for line in path.read_text("utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if split is None or row.get("split") == split:
                    rows.append(row)
    return rows


def youtube_load(data_dir: Path, files: tuple[str, ...]) -> list[tuple[str, int]]:
    """(comment, 1 if spam) from the UCI YouTube Spam Collection CSVs."""
    out: list[tuple[str, int]] = []
    for name in files:
        path = data_dir / "youtube_spam" / name
        if not path.exists():
            continue
        with path.open(encoding="utf-8", newline="") as handle:
            for record in csv.DictReader(handle):
                text = record["CONTENT"].replace("\ufeff", "").replace("&amp;", "&").replace("&#39;", "'").strip()
                out.append((text, int(record["CLASS"])))
    return out


def vader_load(data_dir: Path, *, part: str) -> list[str]:
    """Amazon review sentences; part "train" or "test" by a hash of the sentence id."""
    path = data_dir / "vader_amazon_snippets" / "amazonReviewSnippets_GroundTruth.txt"
    if not path.exists():
        return []
    out = []
    for line in path.read_text("utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        in_test = zlib.crc32(fields[0].encode()) % 2 == 1
        if (part == "test") == in_test:
            out.append(fields[2].strip())
    return out


def vader_negative(data_dir: Path, *, part: str) -> list[str]:
    """The held-out sentences human raters found negative: the 'negative is not a violation' check."""
    path = data_dir / "vader_amazon_snippets" / "amazonReviewSnippets_GroundTruth.txt"
    if not path.exists():
        return []
    out = []
    for line in path.read_text("utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and (zlib.crc32(fields[0].encode()) % 2 == 1) == (part == "test") and float(fields[1]) <= -1.0:
            out.append(fields[2].strip())
    return out


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32] if value else ""


@dataclass(slots=True)
class Case:
    row: dict
    item: ContentItem
    context: CheckContext


def labelled_case(row: dict, *, spam_model: Classifier | None, toxicity_model: Classifier | None) -> Case:
    """A labelled row as the checks see it: the item and a context with the history the row describes."""
    extra = row.get("context") or {}
    item = ContentItem(kind=row.get("kind", "review"), text=row["text"], author_name=row.get("author_name", ""),
                       customer_id=extra.get("customer_id"), device_id=extra.get("device_id", ""), ip=extra.get("ip", ""),
                       language=row.get("language", ""), subject=row.get("subject", ""),
                       subject_terms=[row.get("subject", "")])
    history = [
        PriorItem(text=h["text"], author_name=h.get("author_name", ""), author_key=skeleton(h.get("author_name", "")),
                  customer_id=h.get("customer_id"), device_hash=_hash(h.get("device_id", "")), ip_hash=_hash(h.get("ip", "")),
                  subject_key=fold(h.get("subject", "")).strip(), kind=h.get("kind", "review"),
                  created_at=BENCH_NOW - timedelta(days=h.get("days_ago", 1)))
        for h in extra.get("history", [])
    ]
    members = [Member(name=m["name"], key=skeleton(m["name"]), customer_id=m.get("customer_id"),
                      device_hash=_hash(m.get("device_id", ""))) for m in extra.get("members", [])]
    context = CheckContext(
        staff_names=extra.get("staff_names", ()), brand_terms=extra.get("brand_terms", ()), members=members,
        history=history, device_hash=_hash(item.device_id), ip_hash=_hash(item.ip),
        spam_model=spam_model, toxicity_model=toxicity_model, default_language=row.get("language", "es"),
    )
    return Case(row=row, item=item, context=context)


def _slots(text: str):
    norm = normalize(text)
    return features(norm.text, norm.tokens, text)


def _labelled_targets(labels: list[str]) -> tuple[dict, dict]:
    labels = set(labels)
    spam = {"promotional": int(codes.PROMOTIONAL in labels), "off_topic": int(codes.OFF_TOPIC in labels)}
    toxic = {"attack": int(bool(labels & {codes.INSULT, codes.PERSONAL_ATTACK, codes.HATE})),
             "rudeness": int(codes.RUDENESS in labels)}
    return spam, toxic


def base_datasets(data_dir: Path) -> tuple[Dataset, Dataset, dict]:
    """The shipped training data: labelled train split, YouTube train videos, VADER train half."""
    spam, toxicity = Dataset(), Dataset()
    counts = {"labelled": 0, "youtube": 0, "vader": 0}
    for row in labelled_load(data_dir, split="train"):
        slots = _slots(row["text"])
        spam_y, toxic_y = _labelled_targets(row["labels"])
        spam.add(slots, spam_y, weight=2.0)
        toxicity.add(slots, toxic_y, weight=2.0)
        counts["labelled"] += 1
    for text, is_spam in youtube_load(data_dir, YOUTUBE_TRAIN):
        # The videos' ordinary comments are about songs, not a shop: off-topic for a store's page.
        spam.add(_slots(text), {"promotional": is_spam, "off_topic": None if is_spam else 1})
        counts["youtube"] += 1
    for text in vader_load(data_dir, part="train"):
        slots = _slots(text)
        spam.add(slots, {"promotional": 0, "off_topic": 0}, weight=0.5)
        toxicity.add(slots, {"attack": 0, "rudeness": 0}, weight=0.5)
        counts["vader"] += 1
    return spam, toxicity, counts


def decision_examples(store) -> Iterator[tuple[str, dict, dict]]:
    """(text, spam labels, toxicity labels) from the store's moderators: the newest human decision per item."""
    from tertulia.moderation.models import Decision, Judgement

    latest: dict[tuple[str, int], Decision] = {}
    for decision in (Decision.objects.for_store(store).filter(automatic=False, content_id__isnull=False)
                     .order_by("created_at", "pk")):
        latest[(decision.content_type, decision.content_id)] = decision
    if not latest:
        return
    texts: dict[tuple[str, int], Judgement] = {}
    for judgement in (Judgement.objects.for_store(store).filter(content_id__in={k[1] for k in latest})
                      .order_by("created_at", "pk")):
        texts[(judgement.content_type, judgement.content_id)] = judgement
    for key, decision in latest.items():
        judgement = texts.get(key)
        if judgement is None:
            continue
        code = decision.top_code or _strongest(judgement.results)
        if decision.action == "reject":
            spam = {"promotional": int(code == codes.PROMOTIONAL), "off_topic": int(code == codes.OFF_TOPIC)}
            toxic = {"attack": int(code in (codes.INSULT, codes.PERSONAL_ATTACK, codes.HATE)),
                     "rudeness": int(code == codes.RUDENESS)}
            if not any(spam.values()) and not any(toxic.values()):
                continue  # rejected for a reason no classifier learns (repetition, identities...)
        elif decision.action == "publish":
            spam = {"promotional": 0, "off_topic": 0}
            toxic = {"attack": 0, "rudeness": 0}
        else:
            continue
        yield judgement.text, spam, toxic


def _strongest(results: list[dict]) -> str:
    ranked = sorted(results or [], key=lambda r: -r.get("score", 0))
    return ranked[0]["code"] if ranked else ""


@dataclass(slots=True)
class TrainingRun:
    spam: Classifier
    toxicity: Classifier
    counts: dict


def train_models(*, data_dir: Path | None, store=None, epochs: int = 250) -> TrainingRun:
    """Train both models from the shipped data (if present) and, with a store, its moderators' decisions."""
    if data_dir is not None and data_dir.exists():
        spam_data, toxicity_data, counts = base_datasets(data_dir)
        start_spam = start_toxicity = None
    else:
        spam_data, toxicity_data, counts = Dataset(), Dataset(), {}
        # No base data (an installed package): refine the shipped weights instead of starting from zero.
        start_spam, start_toxicity = shipped("spam"), shipped("toxicity")
    counts["store_decisions"] = 0
    if store is not None:
        for text, spam_y, toxic_y in decision_examples(store):
            slots = _slots(text)
            spam_data.add(slots, spam_y, weight=3.0)
            toxicity_data.add(slots, toxic_y, weight=3.0)
            counts["store_decisions"] += 1
    info = {"trained_at": datetime.now(UTC).isoformat(timespec="seconds"), "examples": counts,
            "store": getattr(store, "slug", None)}
    spam_heads = [h for h in SPAM_HEADS if _has_both(spam_data, h)]
    toxicity_heads = [h for h in TOXICITY_HEADS if _has_both(toxicity_data, h)]
    if not spam_heads or not toxicity_heads:
        raise ValueError("Not enough examples: each model needs positive and negative examples.")
    spam = train(spam_data, name="spam", heads=spam_heads, epochs=epochs, start=start_spam, info=info)
    toxicity = train(toxicity_data, name="toxicity", heads=toxicity_heads, epochs=epochs, start=start_toxicity, info=info)
    return TrainingRun(spam=spam, toxicity=toxicity, counts=counts)


def _has_both(dataset: Dataset, head: str) -> bool:
    values = {v for v in dataset.labels.get(head, []) if v is not None}
    return values == {0, 1}
