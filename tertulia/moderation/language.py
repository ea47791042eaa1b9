"""Which of the two supported languages a text is in: stopword counts plus Spanish-only letters."""

import re

from tertulia.moderation.lexicon import lexicon

_SPANISH_MARKS = re.compile(r"[ñ¿¡áéíóú]", re.IGNORECASE)


def language_detect(tokens: list[str], raw: str, *, default: str = "es") -> str:
    stop = lexicon().stopwords
    es = sum(1 for t in tokens if t in stop["es"])
    en = sum(1 for t in tokens if t in stop["en"])
    if _SPANISH_MARKS.search(raw):
        es += 2
    if es == en:
        return default
    return "es" if es > en else "en"
