"""Off-topic: a text with nothing to do with the product, the category or the store.

Conservative on purpose (a short "me encanta" is on topic; so is any text that names the product or
speaks of buying, using, size, delivery...). A text is suspected only when it shares no word with the
subject and the shop vocabulary, and the score only passes the usual hold threshold with a marker of
a known digression (politics, football, chain messages, "first!") or a confident classifier. Never
enough on its own to reject under the default policy.
"""

import functools

from django.utils.translation import gettext as _

from tertulia.moderation import codes
from tertulia.moderation.checks import Analysis, CheckContext, combine
from tertulia.moderation.checks.abuse import _classifier_score
from tertulia.moderation.items import CheckResult
from tertulia.moderation.lexicon import lexicon
from tertulia.moderation.normalize import normalize

_MIN_CONTENT_WORDS = 4
_CAP = 0.8


@functools.lru_cache(maxsize=4096)
def _subject_words(subject: str, terms: tuple[str, ...]) -> frozenset[str]:
    words: set[str] = set()
    for text in (subject, *terms):
        words.update(t for t in normalize(text).tokens if len(t) > 2)
    return frozenset(words - lexicon().stopwords["es"] - lexicon().stopwords["en"])


def _stems(words) -> set[str]:
    return {w[:5] for w in words if len(w) >= 4}


def check_off_topic(a: Analysis, ctx: CheckContext) -> list[CheckResult]:
    lex = lexicon()
    stop = lex.stopwords
    content = [w for w in a.words if len(w) > 2 and w not in stop["es"] and w not in stop["en"]]
    markers = lex.patterns["off_topic_markers"].search(a.text, a.token_set)
    if len(content) < _MIN_CONTENT_WORDS and not markers:
        return [CheckResult(codes.OFF_TOPIC, 0.0, [])]
    subject = _subject_words(a.item.subject, tuple(a.item.subject_terms))
    content_set = set(content)
    on_subject = bool(content_set & subject) or bool(_stems(content_set) & _stems(subject))
    shop_words = sorted(content_set & lex.commerce)
    scores: list[float] = []
    evidence: list[str] = [m for _, m in markers]
    marker_score = max((w for w, _ in markers), default=0.0)
    if on_subject:
        # Named the product: at most a digression inside a real comment.
        scores.append(marker_score * 0.4)
    elif shop_words:
        scores.append(marker_score * (0.75 if len(shop_words) == 1 else 0.5))
    else:
        scores.append(marker_score)
        if len(content) >= _MIN_CONTENT_WORDS:
            scores.append(0.3 if len(content) < 10 else 0.4)
            evidence.append(_("no word about the subject"))
    model_scores = a.model_scores(ctx.spam_model)
    if model_scores and not on_subject:
        probability = model_scores.get("off_topic", 0.0)
        learned = _classifier_score(probability) * (0.6 if shop_words else 1.0)
        if learned > 0:
            scores.append(learned)
            evidence.append(_("classifier %(score).2f") % {"score": probability})
    return [CheckResult(codes.OFF_TOPIC, min(combine(scores), _CAP), evidence[:6])]
