"""Repetition: the same author saying the same thing again, or a copy of what someone else posted.

"No comentes de manera repetitiva sobre un mismo tema": the author's recent texts (same customer,
device or display name) are compared by Jaccard similarity of character 5-grams; a second review of
one product by one author also counts. Copies of other people's texts count only when long enough
to be more than a common phrase ("muy buen producto" is said by many honest people).
"""

from django.utils.translation import gettext as _

from tertulia.moderation import codes
from tertulia.moderation.checks import Analysis, CheckContext, PriorItem
from tertulia.moderation.fingerprint import jaccard, shingles
from tertulia.moderation.items import CheckResult
from tertulia.moderation.normalize import normalize, skeleton

_LONG = 8  # words: below this, identical texts from different people are coincidence
_SINGLE_PER_SUBJECT = ("review", "testimonial")


def same_author(prior: PriorItem, *, customer_id: int | None, device_hash: str, author_key: str) -> float:
    """How sure we are that prior came from the same person: 1 by customer or device, less by name alone."""
    if customer_id and prior.customer_id == customer_id:
        return 1.0
    if device_hash and prior.device_hash == device_hash:
        return 1.0
    if author_key and prior.author_key == author_key and len(author_key) >= 4:
        return 0.85
    return 0.0


def check_repetition(a: Analysis, ctx: CheckContext) -> list[CheckResult]:
    if not ctx.history:
        return [CheckResult(codes.REPETITION, 0.0, [])]
    item = a.item
    author_key = skeleton(item.author_name)
    mine = shingles(a.text)
    long_text = len(a.words) >= _LONG
    best = 0.0
    evidence: list[str] = []
    same_subject_count = 0
    for prior in ctx.history:
        prior_subject = prior.subject_key
        subject_match = bool(a.subject_key) and prior_subject == a.subject_key
        author = same_author(prior, customer_id=item.customer_id, device_hash=ctx.device_hash, author_key=author_key)
        # Jaccard cannot reach 0.6 between texts of very different length: skip the shingling.
        lengths = sorted((len(prior.text), len(a.norm.raw)))
        similarity = jaccard(mine, shingles(normalize(prior.text).text)) if lengths[0] >= 0.55 * lengths[1] else 0.0
        score = 0.0
        if author:
            if subject_match:
                same_subject_count += 1
            if similarity >= 0.85:
                score = 0.9 if subject_match else (0.8 if long_text else 0.35)
            elif similarity >= 0.6:
                score = 0.7 if subject_match else (0.55 if long_text else 0.2)
            elif subject_match and item.kind in _SINGLE_PER_SUBJECT and prior.kind == item.kind and (
                    prior.author_key == author_key or (item.customer_id and prior.customer_id == item.customer_id)):
                score = 0.6
            score *= author
            why = "same"
        else:
            if long_text and similarity >= 0.9:
                score = 0.75
            elif long_text and similarity >= 0.75:
                score = 0.55
            why = "copy"
        if score > best:
            best = score
            when = prior.created_at.date().isoformat() if prior.created_at else ""
            values = {"percent": round(similarity * 100), "date": when or "-"}
            evidence = [(_("same author, %(percent)d%% alike, %(date)s") if why == "same"
                         else _("copy of another text, %(percent)d%% alike, %(date)s")) % values]
    if same_subject_count >= 3 and item.kind not in _SINGLE_PER_SUBJECT:
        # A thread or product flooded by one author, even in different words.
        flood = min(0.5 + 0.05 * same_subject_count, 0.75)
        if flood > best:
            best = flood
            evidence = [_("%(count)d earlier posts by the same author on %(subject)s")
                        % {"count": same_subject_count, "subject": item.subject[:60]}]
    return [CheckResult(codes.REPETITION, round(best, 4), evidence)]
