"""A stream of posts -> the ones that mention the store, each with what it names and what it says.

This is what connectors will call (issue #5): filter with the store's Matcher, then classify the
matching posts together (batches are several times cheaper per post than one at a time).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from tertulia.listening.backends import classifier_for_store
from tertulia.listening.classify import Prediction, classify_many
from tertulia.listening.matching import Match, Matcher

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Understood:
    index: int  # position of the post in the input
    matches: list[Match]
    prediction: Prediction

    @property
    def product_ids(self) -> list[int]:
        """The catalogue products the post names (by title or SKU), in order of first mention."""
        seen: dict[int, None] = {}
        for match in sorted(self.matches, key=lambda m: m.start):
            if match.term.product_id is not None:
                seen.setdefault(match.term.product_id, None)
        return list(seen)

    @property
    def terms(self) -> list[str]:
        return sorted({m.term.term for m in self.matches})


def posts_understand(texts: Sequence[str], *, matcher: Matcher, with_toxicity: bool = True) -> list[Understood]:
    """The posts among `texts` that mention a tracked term (and hit no exclude rule), classified."""
    found = [(index, matches) for index, text in enumerate(texts) if (matches := matcher.mentions(text))]
    predictions = classify_many([texts[index] for index, _ in found], with_toxicity=with_toxicity)
    return [Understood(index=index, matches=matches, prediction=prediction)
            for (index, matches), prediction in zip(found, predictions, strict=True)]


def posts_classify(texts: Sequence[str], *, store_id: int | None = None, with_toxicity: bool = True) -> list[Prediction]:
    """Language, sentiment, intent and toxicity of each text, with the store's classifier.

    The built-in model, unless the site gave the store a transformers model (listening.backends); if
    that model cannot load or fails on a batch, the batch is classified with the built-in model.
    """
    texts = list(texts)
    model = classifier_for_store(store_id=store_id) if texts else None
    if model is not None:
        try:
            return classify_many(texts, model=model, with_toxicity=with_toxicity)
        except Exception:
            logger.exception("listening model failed on a batch; classified with the built-in model",
                             extra={"store_id": store_id, "texts": len(texts)})
    return classify_many(texts, with_toxicity=with_toxicity)
