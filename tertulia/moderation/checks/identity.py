"""Multiple identities (one device, connection or customer behind several names) and impersonation
(a display name that imitates staff, the brand or another member).

Anonymous posting is fine; what is caught is abuse of it. Devices and IPs are only ever seen hashed
(per store, keyed by the site secret). An IP is weak evidence (offices, families and mobile carriers
share them); a device id from the widget is strong; a shared writing style is only a hint.
"""

from django.utils.translation import gettext as _

from tertulia.moderation import codes
from tertulia.moderation.checks import Analysis, CheckContext, Member
from tertulia.moderation.fingerprint import jaccard, shingles, style_similarity, style_vector
from tertulia.moderation.items import CheckResult
from tertulia.moderation.lexicon import lexicon
from tertulia.moderation.normalize import fold, normalize, skeleton

_STRONG_ROLES = {"admin", "administrador", "administradora", "administrator", "moderador", "moderadora",
                 "moderator", "mod", "soporte", "support", "oficial", "official", "staff", "atencion al cliente",
                 "customer service", "customer care", "servicio tecnico", "verified", "ceo", "helpdesk", "help desk",
                 "tienda oficial", "community manager"}


def check_multiple_identities(a: Analysis, ctx: CheckContext) -> list[CheckResult]:
    own = skeleton(a.item.author_name)
    if not own or not ctx.history:
        return [CheckResult(codes.MULTIPLE_IDENTITIES, 0.0, [])]
    by_device: dict[str, str] = {}
    by_ip: dict[str, str] = {}
    by_customer: dict[str, str] = {}
    same_subject: set[str] = set()
    style_twins: set[str] = set()
    my_style = None
    my_shingles = None
    for prior in ctx.history:
        if not prior.author_key or prior.author_key == own:
            continue
        linked = False
        if ctx.device_hash and prior.device_hash == ctx.device_hash:
            by_device[prior.author_key] = prior.author_name
            linked = True
        if ctx.ip_hash and prior.ip_hash == ctx.ip_hash:
            by_ip[prior.author_key] = prior.author_name
            linked = True
        if a.item.customer_id and prior.customer_id == a.item.customer_id:
            by_customer[prior.author_key] = prior.author_name
            linked = True
        on_subject = bool(a.subject_key) and prior.subject_key == a.subject_key
        if linked and on_subject:
            same_subject.add(prior.author_key)
        if on_subject and not linked and len(a.norm.raw) >= 80 and len(prior.text) >= 80:
            # Another name, same product, written by the same hand: similar style and shared phrasing.
            if my_style is None:
                my_style = style_vector(a.norm.raw)
                my_shingles = shingles(a.text)
            if style_similarity(my_style, prior.style or style_vector(prior.text)) >= 0.97 and \
                    jaccard(my_shingles, shingles(normalize(prior.text).text)) >= 0.35:
                style_twins.add(prior.author_key)
    scores: list[float] = []
    evidence: list[str] = []
    if by_device:
        scores.append(0.55 if len(by_device) == 1 else 0.85)
        evidence.append(_("same device as: %(names)s") % {"names": ", ".join(sorted(by_device.values())[:5])})
    if by_customer:
        scores.append(0.5 if len(by_customer) == 1 else 0.7)
        evidence.append(_("same customer as: %(names)s") % {"names": ", ".join(sorted(by_customer.values())[:5])})
    if by_ip:
        scores.append({1: 0.25, 2: 0.45}.get(len(by_ip), 0.6))
        evidence.append(_("same connection as: %(names)s") % {"names": ", ".join(sorted(by_ip.values())[:5])})
    if style_twins:
        scores.append(0.45 if len(style_twins) == 1 else 0.55)
        evidence.append(_("writes like %(count)d other name(s) on the same subject") % {"count": len(style_twins)})
    score = max(scores, default=0.0)
    if len(scores) > 1:
        score = min(score + 0.1, 0.95)
    if same_subject and score:
        # Several names praising or attacking the same product: the sock-puppet pattern.
        score = min(score + 0.1, 0.95)
        evidence.append(_("on the same subject"))
    return [CheckResult(codes.MULTIPLE_IDENTITIES, round(score, 4), evidence)]


def distance(a: str, b: str) -> int:
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _ratio(a: str, b: str) -> float:
    return distance(a, b) / max(len(a), len(b), 1)


def within(a: str, b: str, limit: int) -> bool:
    """Whether the edit distance of a and b is at most `limit`: only a band of the table, stopping early."""
    if abs(len(a) - len(b)) > limit:
        return False
    if a == b:
        return True
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        low, high = max(1, i - limit), min(len(b), i + limit)
        current = [i] + [limit + 1] * len(b)
        for j in range(low, high + 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != b[j - 1]))
        if min(current[max(0, low - 1):high + 1]) > limit:
            return False
        previous = current
    return previous[len(b)] <= limit


def _near(cache: dict[str, bool], key: str, other: str, limit: int) -> bool:
    if other not in cache:
        cache[other] = within(key, other, limit)
    return cache[other]


def _other_person(member: Member, *, customer_id: int | None, device_hash: str) -> bool:
    if customer_id and member.customer_id == customer_id:
        return False
    if device_hash and member.device_hash == device_hash:
        return False
    return True


def check_impersonation(a: Analysis, ctx: CheckContext) -> list[CheckResult]:
    name = a.item.author_name.strip()
    key = skeleton(name)
    if len(key) < 3:
        return [CheckResult(codes.IMPERSONATION, 0.0, [])]
    scores: list[float] = []
    evidence: list[str] = []
    folded_name = " ".join(normalize(name).tokens)
    roles = [r for r in lexicon().role_words if f" {r} " in f" {folded_name} "]
    for staff in ctx.staff_names:
        staff_key = skeleton(staff)
        if len(staff_key) < 3:
            continue
        if key == staff_key:
            scores.append(0.9)
        elif len(staff_key) >= 5 and staff_key in key:
            scores.append(0.8)
        elif len(key) >= 5 and _ratio(key, staff_key) <= 0.2:
            scores.append(0.75)
        else:
            continue
        evidence.append(_("imitates staff: %(name)s") % {"name": staff})
    for brand in ctx.brand_terms:
        brand_key = skeleton(brand)
        if len(brand_key) < 4:
            continue
        if brand_key in key or (len(key) >= 5 and _ratio(key, brand_key) <= 0.2):
            scores.append(0.9 if roles or key == brand_key else 0.7)
            evidence.append(_("uses the brand: %(name)s") % {"name": brand})
    if roles:
        strong = any(r in _STRONG_ROLES for r in roles)
        scores.append(0.6 if strong else 0.3)
        evidence.append(_("role in the name: %(roles)s") % {"roles": ", ".join(roles)})
    near: dict[str, bool] = {}  # one comparison per distinct name, however many people use it
    # Near spellings count only for names of letters: "usuario12" and "usuario13" are two people.
    limit = int(0.15 * len(key)) if key.isalpha() else 0
    for member in ctx.members:
        if not _other_person(member, customer_id=a.item.customer_id, device_hash=ctx.device_hash):
            continue
        if member.key == key:
            if fold(member.name).strip() != fold(name):
                scores.append(0.8)  # looks the same, written differently: look-alike letters, digits, spacing
                evidence.append(_("looks like member: %(name)s") % {"name": member.name})
            elif len(name.split()) >= 2 or len(key) >= 8:
                scores.append(0.55)
                evidence.append(_("same name as another member: %(name)s") % {"name": member.name})
        elif len(key) >= 7 and limit and member.key.isalpha() and _near(near, key, member.key, limit):
            scores.append(0.5)
            evidence.append(_("close to member: %(name)s") % {"name": member.name})
    score = max(scores, default=0.0)
    return [CheckResult(codes.IMPERSONATION, round(score, 4), list(dict.fromkeys(evidence))[:5])]
