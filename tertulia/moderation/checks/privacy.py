"""Personal data: an e-mail address, phone number, ID card, IBAN or card number written in the text.

Whoever it belongs to (the author or someone else), it is not published; the evidence kept for the
moderator is masked so the audit does not become a second copy of the data.
"""

from tertulia.moderation import codes
from tertulia.moderation.checks import Analysis, CheckContext
from tertulia.moderation.checks.contacts import ROLE_MAILBOX
from tertulia.moderation.items import CheckResult


def mask(value: str) -> str:
    value = value.strip()
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    keep = 2 if len(value) > 8 else 1
    return value[:keep] + "*" * max(len(value) - 2 * keep, 1) + value[-keep:]


def check_personal_data(a: Analysis, ctx: CheckContext) -> list[CheckResult]:
    found = a.contacts(ctx)
    score = 0.0
    evidence: list[str] = []
    if found.ids:
        score = 0.95
        evidence.extend(mask(v) for v in found.ids)
    personal = [e for e in found.emails if not ROLE_MAILBOX.match(e)]
    if personal:
        score = max(score, 0.9)
        evidence.extend(mask(v) for v in personal)
    if found.phones:
        score = max(score, 0.85)
        evidence.extend(mask(v) for v in found.phones)
    return [CheckResult(codes.PERSONAL_DATA, score, evidence[:6])]
