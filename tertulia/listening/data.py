"""The labelled sets the built-in model learns from and is measured on, and their fixed split.

- `tests/fixtures/listening/posts_{es,en}.jsonl`: social posts about shops written and labelled by the
  project (sentiment and intent), see that folder's README.
- `tests/fixtures/listening/vader_amazon_snippets/`: Hutto & Gilbert's Amazon review sentences with
  mean human valence -4..4 (MIT), read as three classes: below -0.5 negative, above 0.5 positive,
  neutral between. English sentiment only.

Held out = a quarter of the items chosen by a hash of their id: the same on every machine and run,
and never seen by training.
"""

import zlib
from dataclasses import dataclass
from pathlib import Path

import orjson

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "listening"
VADER_FILE = "vader_amazon_snippets/amazonReviewSnippets_GroundTruth.txt"
VADER_NEUTRAL = 0.5


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    text: str
    language: str
    sentiment: str | None
    intent: str | None
    source: str  # "posts" or "vader"

    @property
    def held_out(self) -> bool:
        return zlib.crc32(self.id.encode()) % 4 == 0


def posts(*, language: str, data_dir: Path = DEFAULT_DIR) -> list[Example]:
    out = []
    for line in (data_dir / f"posts_{language}.jsonl").read_bytes().splitlines():
        if line.strip():
            row = orjson.loads(line)
            out.append(Example(id=row["id"], text=row["text"], language=row["language"], sentiment=row["sentiment"],
                               intent=row["intent"], source="posts"))
    return out


def vader(*, data_dir: Path = DEFAULT_DIR) -> list[Example]:
    out = []
    raw = (data_dir / VADER_FILE).read_bytes().decode("utf-8", errors="replace")
    for line in raw.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3 or not parts[2].strip():
            continue
        valence = float(parts[1])
        label = "negative" if valence < -VADER_NEUTRAL else "positive" if valence > VADER_NEUTRAL else "neutral"
        out.append(Example(id="vader:" + parts[0], text=parts[2].strip(), language="en", sentiment=label, intent=None,
                           source="vader"))
    return out
