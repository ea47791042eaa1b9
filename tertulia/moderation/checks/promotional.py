"""Promotional content: links, contact details offered, coupon codes, follow-me and subscribe requests, ads.

A link to the store's own site (the policy's allowed domains) is not promotion. The spam classifier
(trained on the YouTube spam collection and the project's labelled set) adds evidence; on its own it
can only hold a text for a person.
"""

from django.utils.translation import gettext as _

from tertulia.moderation import codes
from tertulia.moderation.checks import Analysis, CheckContext, combine
from tertulia.moderation.checks.abuse import _classifier_score
from tertulia.moderation.checks.contacts import SHORTENERS
from tertulia.moderation.items import CheckResult
from tertulia.moderation.lexicon import lexicon


def check_promotional(a: Analysis, ctx: CheckContext) -> list[CheckResult]:
    lex = lexicon()
    found = a.contacts(ctx)
    scores: list[float] = []
    evidence: list[str] = []
    if found.urls:
        shortened = any(s in url.lower() for url in found.urls for s in SHORTENERS)
        # A full link asks to be followed; a bare site name ("cheaper on amazon.com") is a mention,
        # weak on its own.
        linked = [u for u in found.urls if u.lower().startswith(("http", "www")) or "/" in u]
        if shortened:
            scores.append(0.85)
        elif linked:
            scores.append(0.75 if len(found.urls) > 1 else 0.6)
        else:
            scores.append(0.45 if len(found.urls) == 1 else 0.55)
        evidence.extend(found.urls[:4])
    for weight, matched in lex.patterns["promo_patterns"].search(a.text, a.token_set):
        scores.append(weight)
        evidence.append(matched)
    if found.any_contact:
        offers = lex.patterns["contact_offer_patterns"].search(a.text, a.token_set)
        commercial = max(scores, default=0.0) >= 0.5 or bool(found.urls)
        scores.append(0.85 if offers and commercial else 0.45 if offers else 0.35)
        evidence.extend(m for _, m in offers[:2])
    model_scores = a.model_scores(ctx.spam_model)
    if model_scores:
        probability = model_scores.get("promotional", 0.0)
        learned = _classifier_score(probability)
        if learned > 0:
            scores.append(learned)
            evidence.append(_("classifier %(score).2f") % {"score": probability})
    return [CheckResult(codes.PROMOTIONAL, combine(scores), list(dict.fromkeys(evidence))[:8])]
