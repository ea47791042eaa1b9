"""The policy's checks. Each looks at one analysed text (and what the store knows) and returns a CheckResult.

`checks_run(item, context=...)` is pure: no database. What a check needs from history (the
author's earlier texts, names seen on the same device, staff names) arrives in a CheckContext
that `moderation.selectors.check_context_build` fills from the database, and that tests and the
bench fill by hand.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from tertulia.moderation import codes
from tertulia.moderation.classifier import Classifier, features
from tertulia.moderation.items import CheckResult, ContentItem
from tertulia.moderation.language import language_detect
from tertulia.moderation.lexicon import lexicon
from tertulia.moderation.normalize import Normalized, fold, normalize

if TYPE_CHECKING:
    from tertulia.moderation.checks.contacts import Contacts


@dataclass(slots=True)
class PriorItem:
    """Something moderation judged before, as its history table keeps it."""

    text: str
    author_name: str = ""
    author_key: str = ""  # skeleton of the display name
    customer_id: int | None = None
    device_hash: str = ""
    ip_hash: str = ""
    subject_key: str = ""
    kind: str = ""
    created_at: datetime | None = None
    style: list[float] = field(default_factory=list)
    action: str = ""


@dataclass(slots=True)
class Member:
    """A display name in recent use, with what identifies whoever uses it."""

    name: str
    key: str  # skeleton
    customer_id: int | None = None
    device_hash: str = ""


@dataclass(slots=True)
class CheckContext:
    staff_names: Sequence[str] = ()
    brand_terms: Sequence[str] = ()
    allowed_domains: Sequence[str] = ()
    members: Sequence[Member] = ()
    history: Sequence[PriorItem] = ()  # recent items of the same author, device, IP, or near-duplicates
    device_hash: str = ""
    ip_hash: str = ""
    enabled: frozenset[str] = frozenset(codes.REASON_CODES)
    spam_model: Classifier | None = None
    toxicity_model: Classifier | None = None
    default_language: str = "es"


@dataclass(slots=True)
class Analysis:
    """One text, analysed once and shared by every check."""

    item: ContentItem
    norm: Normalized
    words: list[str]  # tokens with disguised lexicon words resolved (m**rda -> mierda)
    text: str  # words joined by spaces: what phrase patterns read
    token_set: set[str]
    language: str
    subject_key: str
    revealed: list[tuple[str, str]]  # (as written, lexicon word) for disguised words
    _slots: np.ndarray | None = None
    _model_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    _contacts: "Contacts | None" = None

    @property
    def raw(self) -> str:
        return self.norm.raw

    def slots(self) -> np.ndarray:
        if self._slots is None:
            self._slots = features(self.norm.text, self.norm.tokens, self.norm.raw)
        return self._slots

    def contacts(self, ctx: "CheckContext") -> "Contacts":
        if self._contacts is None:
            from tertulia.moderation.checks.contacts import find_contacts

            self._contacts = find_contacts(self.norm.raw, language=self.language,
                                           allowed_domains=tuple(ctx.allowed_domains))
        return self._contacts

    def model_scores(self, model: Classifier | None) -> dict[str, float]:
        if model is None:
            return {}
        cached = self._model_scores.get(model.name)
        if cached is None:
            cached = self._model_scores[model.name] = model.scores(self.slots())
        return cached


_DOUBLE = re.compile(r"(.)\1")


def _double(word: str) -> bool:
    return _DOUBLE.search(word) is not None


MAX_ANALYSED = 20_000  # characters; longer texts are judged on their beginning (ugc limits far below this)


def analyse(item: ContentItem, *, default_language: str = "es") -> Analysis:
    raw = f"{item.title}\n{item.text}" if item.title else item.text
    raw = raw[:MAX_ANALYSED]
    norm = normalize(raw)
    lex = lexicon()
    known, common = lex.known, lex.common
    words = norm.tokens
    revealed: list[tuple[str, str]] = []
    # Disguised lexicon words (masked, letters doubled, 1 for l) are read as the word they hide.
    for position, token in enumerate(norm.tokens):
        if token in known or token in common:
            continue
        readings = norm.alternates.get(position, ())
        if not readings and not _double(token):
            continue
        found = None
        for reading in (token, *readings):
            found = reading if reading in known else lex.lookup(reading)
            if found:
                break
        if found:
            if words is norm.tokens:
                words = list(norm.tokens)
            words[position] = found
            revealed.append((token, found))
    text = norm.text if words is norm.tokens else " ".join(words)
    token_set = set(words)
    language = item.language if item.language in codes.LANGUAGES else language_detect(
        norm.tokens, raw, default=default_language)
    return Analysis(item=item, norm=norm, words=words, text=text, token_set=token_set, language=language,
                    subject_key=fold(item.subject).strip(), revealed=revealed)


Check = Callable[[Analysis, CheckContext], list[CheckResult]]


def combine(scores: list[float]) -> float:
    """Several signals for one code: the strongest, raised a little by the next one. Never above 0.99."""
    ordered = sorted((s for s in scores if s > 0), reverse=True)
    if not ordered:
        return 0.0
    top = ordered[0]
    if len(ordered) > 1:
        top += (1 - top) * ordered[1] * 0.5
    return float(min(round(top, 4), 0.99))


def _registry() -> list[tuple[tuple[str, ...], Check]]:
    from tertulia.moderation.checks import abuse, identity, privacy, promotional, repetition, topic

    return [
        ((codes.INSULT, codes.PERSONAL_ATTACK, codes.RUDENESS, codes.HATE), abuse.check_abuse),
        ((codes.PROMOTIONAL,), promotional.check_promotional),
        ((codes.PERSONAL_DATA,), privacy.check_personal_data),
        ((codes.OFF_TOPIC,), topic.check_off_topic),
        ((codes.REPETITION,), repetition.check_repetition),
        ((codes.MULTIPLE_IDENTITIES,), identity.check_multiple_identities),
        ((codes.IMPERSONATION,), identity.check_impersonation),
    ]


_CHECKS: list[tuple[tuple[str, ...], Check]] | None = None


def run_checks(item: ContentItem, context: CheckContext, *, analysis: Analysis | None = None,
               ) -> tuple[Analysis, list[CheckResult]]:
    global _CHECKS
    if _CHECKS is None:
        _CHECKS = _registry()
    if analysis is None:
        analysis = analyse(item, default_language=context.default_language)
    results: list[CheckResult] = []
    for produced, check in _CHECKS:
        if not any(code in context.enabled for code in produced):
            continue
        results.extend(r for r in check(analysis, context) if r.code in context.enabled)
    folded = None
    for result in results:
        if result.score > 0 and result.evidence:
            if folded is None:
                folded = fold(analysis.norm.raw)
            result.evidence = [as_written(analysis.norm.raw, folded, e) for e in result.evidence]
    return analysis, results


_EVIDENCE_WORD = re.compile(r"^[a-zñ0-9 ]{2,80}$")


def as_written(raw: str, folded: str, evidence: str) -> str:
    """Evidence in the author's own spelling ("imbécil", "P.U.T.A"), so a moderator's screen can find
    and mark it in the text; normalised evidence stays as it is when no such span exists."""
    if len(folded) != len(raw) or not _EVIDENCE_WORD.match(evidence):
        return evidence
    letters = [re.escape(ch) for ch in evidence.replace(" ", "")]
    if not letters:
        return evidence
    match = re.search(r"(?<![^\W_])" + r"[\W_]{0,3}".join(letters) + r"(?![^\W_])", folded)
    return raw[match.start():match.end()] if match else evidence
