"""Insults, personal attacks, rudeness and hate: what the policy says about how people are addressed.

The line the policy draws, and these checks keep: harsh opinions about a product, a delivery or a
company's service are allowed ("una basura de producto", "worst purchase ever"); what is caught is
calling people names (insult), attacking or ridiculing the person instead of the subject
(personal_attack, threats included), vulgar language (rudeness: strong words hold, mild ones do
not), and demeaning people for who they are (hate).

Lexicon words are matched after normalisation (accents, leetspeak, spacing and masks undone);
insulting words count fully only when aimed at someone (second person, "es un ...", vocative),
because "idiota" in "el diseño es de idiotas" and "eres idiota" are not the same thing. The
toxicity classifier adds evidence but on its own can only send a text to a person, never reject it.
"""

import functools
import re

from django.utils.translation import gettext as _

from tertulia.moderation import codes
from tertulia.moderation.checks import Analysis, CheckContext, combine
from tertulia.moderation.items import CheckResult
from tertulia.moderation.lexicon import lexicon

_TIER_FACTOR = {"strong": 1.08, "words": 1.0, "adjective": 0.9, "you": 0.95, "soft": 0.7}
# Untargeted, an insulting word is weak evidence ("qué idea más tonta"), except the crude ones.
_LOOSE = {"strong": 0.55, "words": 0.2, "adjective": 0.1, "you": 0.0, "soft": 0.0}
_VOCATIVE_PUNCT = r"[.!?¡¿,;:()\n\"'«»]"


@functools.cache
def _vocative(word: str) -> re.Pattern:
    return re.compile(rf"(?:^|{_VOCATIVE_PUNCT})\s*{re.escape(word)}\s*(?:{_VOCATIVE_PUNCT}|$)")


def _classifier_score(probability: float) -> float:
    """A classifier alone tops out below the usual reject threshold: it can hold, not reject."""
    return max(0.0, (probability - 0.5) * 1.2)


def _tier_of_match(matched: str, tier: dict[str, str]) -> str:
    words = matched.split(" ")
    for size in (3, 2, 1):
        if len(words) >= size:
            found = tier.get(" ".join(words[-size:]))
            if found:
                return found
    return "words"


def check_abuse(a: Analysis, ctx: CheckContext) -> list[CheckResult]:
    lex = lexicon()
    tokens = a.token_set
    text = a.text
    revealed = {word: written for written, word in a.revealed}

    def shown(word: str) -> str:
        return f"{word} ({revealed[word]})" if word in revealed else word

    # --- rudeness: vulgar words, strong or mild, and crude phrases.
    strong = sorted(tokens & lex.profanity_strong)
    mild = sorted(tokens & lex.profanity_mild)
    rude_scores: list[float] = []
    rude_evidence: list[str] = []
    if strong:
        rude_scores.append(0.75 if len(strong) == 1 else 0.85)
        rude_evidence.extend(shown(w) for w in strong)
    if mild:
        rude_scores.append(min(0.3 + 0.05 * (len(mild) - 1), 0.45))
        rude_evidence.extend(shown(w) for w in mild)
    for weight, matched in lex.patterns["profanity_phrases"].search(text, tokens):
        if weight > 0:
            rude_scores.append(weight)
            rude_evidence.append(matched)

    # --- insult: insulting words, weighed by whether they are aimed at someone.
    tier = lex.insult_tier
    insult_words = [w for w in tokens if w in tier]
    insult_scores: list[float] = []
    insult_evidence: list[str] = []
    if insult_words or tokens & lex.insult_heads:
        for weight, matched in lex.patterns["insult_patterns"].search(text, tokens):
            insult_scores.append(min(weight * _TIER_FACTOR[_tier_of_match(matched, tier)], 0.98))
            insult_evidence.append(matched)
        folded = None
        for word in insult_words:
            word_tier = tier[word]
            loose = _LOOSE[word_tier]
            if len(a.words) <= 4 and word_tier in ("strong", "words"):
                loose = max(loose, 0.6)  # a bare "¡idiota!" or "you moron" is aimed at whoever reads it
            if word_tier != "you" and (word_tier != "adjective") and loose < 0.75:
                if folded is None:
                    folded = a.norm.raw.lower()
                written = revealed.get(word, word)
                if _vocative(written).search(folded) or (written != word and _vocative(word).search(folded)):
                    loose = max(loose, 0.75 * _TIER_FACTOR[word_tier])
            if loose:
                insult_scores.append(min(loose, 0.98))
                insult_evidence.append(shown(word))

    # --- personal attack: attacks on the person, ridicule, threats.
    attack_scores: list[float] = []
    attack_evidence: list[str] = []
    for key in ("attack_patterns", "threat_patterns"):
        for weight, matched in lex.patterns[key].search(text, tokens):
            attack_scores.append(weight)
            attack_evidence.append(matched)

    # --- hate: slurs and demeaning statements about groups.
    hate_scores: list[float] = []
    hate_evidence: list[str] = []
    for slur in sorted(tokens & lex.slurs):
        hate_scores.append(0.9)
        hate_evidence.append(shown(slur))
    for weight, matched in lex.patterns["hate_patterns"].search(text, tokens):
        if matched not in hate_evidence:
            hate_scores.append(weight)
            hate_evidence.append(matched)

    # --- the toxicity classifier: catches what no list foresaw; alone it can only hold.
    model_scores = a.model_scores(ctx.toxicity_model)
    if model_scores:
        attack_p = _classifier_score(model_scores.get("attack", 0.0))
        aimed = bool(tokens & lex.second_person)
        named_group = bool(tokens & lex.groups)
        if attack_p > 0 and combine(hate_scores) >= 0.4:
            # Already caught as hate: the classifier saw the same words, it is not a second offence.
            attack_p = 0.0
        elif attack_p > 0 and named_group and not aimed:
            hate_scores.append(min(attack_p, 0.6))
            hate_evidence.append(_("classifier %(score).2f, about a group") % {"score": model_scores["attack"]})
            attack_p = 0.0
        if attack_p > 0:
            if insult_words:
                insult_scores.append(attack_p)
            elif aimed:
                attack_scores.append(attack_p)
            else:
                attack_scores.append(min(attack_p, 0.4))
            evidence = _("classifier %(score).2f") % {"score": model_scores["attack"]}
            (insult_evidence if insult_words else attack_evidence).append(evidence)
        rude_p = _classifier_score(model_scores.get("rudeness", 0.0))
        if rude_p > 0:
            rude_scores.append(rude_p if (strong or mild) else min(rude_p, 0.45))
            rude_evidence.append(_("classifier %(score).2f") % {"score": model_scores["rudeness"]})

    if combine(hate_scores) >= 0.4 and not (tokens & lex.second_person):
        # "Los X son unos vagos" is hate about a group; the insulting word is not a separate insult.
        insult_scores = [s * 0.5 for s in insult_scores]
    return [
        CheckResult(codes.INSULT, combine(insult_scores), _unique(insult_evidence)),
        CheckResult(codes.PERSONAL_ATTACK, combine(attack_scores), _unique(attack_evidence)),
        CheckResult(codes.RUDENESS, combine(rude_scores), _unique(rude_evidence)),
        CheckResult(codes.HATE, combine(hate_scores), _unique(hate_evidence)),
    ]


def _unique(evidence: list[str]) -> list[str]:
    return list(dict.fromkeys(evidence))[:8]
