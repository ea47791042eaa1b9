"""Writes of moderation and its public surface: judge content, record decisions, change the policy.

Other apps use only what is imported from here: ContentItem, CheckResult, Verdict, content_moderate,
decision_record, reason_message, checks_run, policy_update (and selectors for reads).
"""

import hashlib
import hmac
import ipaddress
import zlib
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation

from tertulia.core.models import Store
from tertulia.moderation import codes
from tertulia.moderation import policy as policy_rules
from tertulia.moderation.checks import Analysis, CheckContext, analyse, run_checks
from tertulia.moderation.classifier import Classifier, shipped
from tertulia.moderation.codes import action_message, reason_label, reason_message
from tertulia.moderation.fingerprint import simhash, simhash_bands, style_vector, text_hash
from tertulia.moderation.items import CheckResult, ContentItem, Verdict
from tertulia.moderation.models import Action, Decision, Judgement, Policy, PolicyRevision, StoreClassifier
from tertulia.moderation.normalize import fold, skeleton
from tertulia.moderation.selectors import check_context_build, classifiers_forget, members_forget, policy_get

__all__ = [
    "CheckResult", "ContentItem", "Verdict", "action_message", "checks_run", "content_moderate", "decision_record",
    "identifier_hash", "judgements_erase", "policy_update", "reason_label", "reason_message",
]

MAX_TEXT = 4000
_SHORT_FOR_BANDS = 8  # words; shorter texts collide too often for SimHash bands to mean anything
_ACTION_ALIASES = {"approve": Action.PUBLISH, "approved": Action.PUBLISH, "publish": Action.PUBLISH,
                   "published": Action.PUBLISH, "held": Action.HOLD,
                   "hold": Action.HOLD, "reject": Action.REJECT, "rejected": Action.REJECT}


def identifier_hash(*, store_id: int, kind: str, value: str) -> str:
    """A device id or IP as moderation keeps it: keyed by the site secret and the store, not reversible,
    and not comparable across stores."""
    if not value:
        return ""
    if kind == "ip":
        value = _ip_prefix(value)
    message = f"tertulia.moderation:{store_id}:{kind}:{value}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()[:32]


def _ip_prefix(value: str) -> str:
    # An IPv6 host changes its last 64 bits at will; the /64 is what stays with one subscriber.
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return value.strip()
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def checks_run(item: ContentItem, *, store: Store | None = None, context: CheckContext | None = None) -> list[CheckResult]:
    """Every enabled check on one item, without recording anything.

    With a store, history and policy come from the database; with neither store nor context, the
    checks see no history and use the shipped classifiers (what the bench measures).
    """
    if context is None:
        if store is None:
            context = default_context()
        else:
            policy = policy_get(store=store)
            analysis = analyse(item, default_language=store.language)
            context = _context_for(store, analysis, policy, item, timezone.now())
            return run_checks(item, context, analysis=analysis)[1]
    return run_checks(item, context)[1]


_DEFAULT_CONTEXT: CheckContext | None = None


def default_context() -> CheckContext:
    global _DEFAULT_CONTEXT
    if _DEFAULT_CONTEXT is None:
        _DEFAULT_CONTEXT = CheckContext(spam_model=shipped("spam"), toxicity_model=shipped("toxicity"))
    return _DEFAULT_CONTEXT


def _fingerprints(analysis: Analysis) -> tuple[str, int, tuple[int, int, int, int] | None]:
    digest = text_hash(analysis.norm.text)
    value = simhash(analysis.norm.tokens)
    bands = simhash_bands(value) if len(analysis.norm.tokens) >= _SHORT_FOR_BANDS else None
    return digest, value, bands


def _context_for(store: Store, analysis: Analysis, policy, item: ContentItem, now: datetime) -> CheckContext:
    digest, _, bands = _fingerprints(analysis)
    return check_context_build(
        store=store, analysis=analysis, policy=policy,
        device_hash=identifier_hash(store_id=store.pk, kind="device", value=item.device_id),
        ip_hash=identifier_hash(store_id=store.pk, kind="ip", value=item.ip),
        text_hash=digest, bands=bands, now=now,
    )


def content_moderate(
    *, store: Store, item: ContentItem, content_type: str, content_id: int | None = None, now: datetime | None = None,
) -> Verdict:
    """Judge one piece of content under the store's policy and keep the record.

    Records what was judged (history for later checks) and, when content_id is given, the automatic
    Decision. When the content is saved afterwards, pass verdict.judgement_id to decision_record.
    """
    now = now or timezone.now()
    policy = policy_get(store=store)
    analysis = analyse(item, default_language=store.language)
    digest, value, bands = _fingerprints(analysis)
    device_hash = identifier_hash(store_id=store.pk, kind="device", value=item.device_id)
    ip_hash = identifier_hash(store_id=store.pk, kind="ip", value=item.ip)
    context = check_context_build(store=store, analysis=analysis, policy=policy, device_hash=device_hash,
                                  ip_hash=ip_hash, text_hash=digest, bands=bands, now=now,
                                  content_type=content_type, content_id=content_id)
    # Descriptive evidence ("same device as: ...") is written for the store's staff, in its language.
    with translation.override(store.language if store.language in codes.LANGUAGES else "es"):
        _, results = run_checks(item, context, analysis=analysis)
    action, triggered = policy_rules.decide(policy, results)
    kept = [r.as_dict() for r in results if r.score > 0]
    all_bands = bands or (-1, -1, -1, -1)
    stored_text = _redacted(analysis, context)
    with transaction.atomic():
        judgement = Judgement.objects.create(
            store=store, content_type=content_type, content_id=content_id, kind=item.kind,
            text=stored_text[:MAX_TEXT], language=analysis.language,
            author_name=item.author_name[:150], author_key=skeleton(item.author_name)[:150],
            customer_id=item.customer_id, device_hash=device_hash, ip_hash=ip_hash,
            subject_key=fold(item.subject).strip()[:200], text_hash=digest, simhash=value,
            band0=all_bands[0], band1=all_bands[1], band2=all_bands[2], band3=all_bands[3],
            style=style_vector(item.text), action=action, results=kept, policy_version=policy.version, created_at=now,
        )
        if content_id is not None:
            _decision_create(store=store, content_type=content_type, content_id=content_id, action=action,
                             results=kept, policy_version=policy.version, decided_by="system", user=None,
                             automatic=True, note="", judgement=judgement, now=now, triggered=triggered)
    return Verdict(action=action, results=results, policy_version=policy.version, language=analysis.language,
                   triggered=triggered, judgement_id=judgement.pk)


def _redacted(analysis: Analysis, context: CheckContext) -> str:
    """The text as moderation keeps it: e-mails, phone numbers and ID/bank/card numbers replaced."""
    text = analysis.norm.raw
    found = analysis.contacts(context)
    for value in (*found.emails, *found.phones, *found.ids):
        text = text.replace(value, "[…]")
    return text


def _results_as_dicts(results: Iterable[CheckResult | dict]) -> list[dict]:
    out = []
    for result in results or ():
        if isinstance(result, CheckResult):
            out.append(result.as_dict())
        elif isinstance(result, dict) and "code" in result:
            out.append({"code": str(result["code"]), "score": float(result.get("score", 0.0)),
                        "evidence": [str(e) for e in result.get("evidence", [])][:8]})
    return out


def _top_code(results: list[dict], triggered: list[str] | None) -> str:
    if triggered:
        return triggered[0]
    ranked = sorted((r for r in results if r["code"] in codes.REASON_CODES), key=lambda r: -r["score"])
    return ranked[0]["code"] if ranked and ranked[0]["score"] >= 0.4 else ""


def _decision_create(*, store, content_type, content_id, action, results, policy_version, decided_by, user, automatic,
                     note, judgement, now, triggered=None) -> Decision:
    return Decision.objects.create(
        store=store, content_type=content_type, content_id=content_id, action=action, automatic=automatic,
        decided_by=decided_by[:150], decided_by_user=user, policy_version=policy_version, results=results,
        top_code=_top_code(results, triggered), note=note, judgement=judgement, created_at=now,
    )


def decision_record(
    *, store: Store, content_type: str, content_id: int, action: str, results: Iterable[CheckResult | dict],
    policy_version: int, decided_by, automatic: bool, note: str = "", judgement_id: int | None = None,
    now: datetime | None = None,
) -> Decision:
    """Audit one decision. `decided_by` is "system", a username, or a User; `action` publish|hold|reject
    (approve is read as publish). With judgement_id, the judged item is linked to the saved content."""
    normalized = _ACTION_ALIASES.get(str(action).lower())
    if normalized is None:
        raise ValueError(f"Unknown moderation action {action!r}.")
    user = None
    if hasattr(decided_by, "get_username"):
        user = decided_by
        decided_by = decided_by.get_username()
    decided_by = str(decided_by or ("system" if automatic else "unknown"))
    now = now or timezone.now()
    judgement = None
    with transaction.atomic():
        if judgement_id is not None:
            judgement = Judgement.objects.for_store(store).filter(pk=judgement_id).first()
            if judgement is not None and judgement.content_id is None:
                Judgement.objects.filter(pk=judgement.pk).update(content_type=content_type, content_id=content_id)
        elif content_id is not None:
            judgement = (Judgement.objects.for_store(store).filter(content_type=content_type, content_id=content_id)
                         .order_by("-created_at").first())
        return _decision_create(store=store, content_type=content_type, content_id=content_id, action=normalized,
                                results=_results_as_dicts(results), policy_version=policy_version, decided_by=decided_by,
                                user=user, automatic=automatic, note=note, judgement=judgement, now=now)


def policy_update(*, store: Store, changes: dict, changed_by: str = "") -> policy_rules.EffectivePolicy:
    """Change some fields of the store's policy; validated as a whole, versioned, kept as a revision.

    Thresholds are merged per code (a code set to null goes back to the default); other fields are
    replaced. Raises ApiError(invalid_policy, 422) with one detail per problem and changes nothing.
    """
    if not isinstance(changes, dict):
        raise policy_rules.invalid(policy_rules.validate(changes))
    with transaction.atomic():
        # get_or_create settles two first changes racing to create the row.
        row, created = Policy.objects.get_or_create(store=store, defaults={"version": 1, "updated_by": "system"})
        if created:
            PolicyRevision.objects.create(store=store, version=1, data=_policy_data(row), changed_by="system")
        row = Policy.objects.select_for_update().get(pk=row.pk)
        proposed = _policy_data(row)
        for key, value in changes.items():
            if key == "thresholds" and isinstance(value, dict) and isinstance(proposed["thresholds"], dict):
                merged = dict(proposed["thresholds"])
                for code, pair in value.items():
                    if pair is None:
                        merged.pop(code, None)
                    elif isinstance(pair, dict) and isinstance(merged.get(code), dict):
                        merged[code] = {**merged[code], **pair}
                    else:
                        merged[code] = pair
                proposed["thresholds"] = merged
            else:
                proposed[key] = value
        errors = policy_rules.validate(proposed)
        if errors:
            raise policy_rules.invalid(errors)
        for key in ("staff_names", "brand_terms"):
            proposed[key] = [v.strip() for v in proposed[key]]
        proposed["allowed_domains"] = [v.strip().lower() for v in proposed["allowed_domains"]]
        for key, value in proposed.items():
            setattr(row, key, value)
        row.version += 1
        row.updated_at = timezone.now()
        row.updated_by = changed_by[:150]
        row.save()
        PolicyRevision.objects.create(store=store, version=row.version, data=proposed, changed_by=changed_by[:150])
    members_forget(store=store)
    return policy_get(store=store)


def _policy_data(row: Policy) -> dict:
    return {"thresholds": row.thresholds or {}, "enabled_checks": row.enabled_checks or [],
            "staff_names": row.staff_names or [], "brand_terms": row.brand_terms or [],
            "allowed_domains": row.allowed_domains or [], "premoderate": row.premoderate, "window_days": row.window_days}


def store_classifier_save(*, store: Store, classifier: Classifier, examples: int) -> StoreClassifier:
    """Keep a classifier retrained for this store; the newest version is the one used."""
    with transaction.atomic():
        latest = (StoreClassifier.objects.select_for_update().for_store(store).filter(name=classifier.name)
                  .order_by("-version").values_list("version", flat=True).first()) or 0
        saved = StoreClassifier.objects.create(
            store=store, name=classifier.name, version=latest + 1, model=zlib.compress(classifier.to_json(), 6),
            examples=examples, info=classifier.info,
        )
    classifiers_forget(store=store)
    return saved


def judgements_erase(*, store: Store, customer_id: int) -> int:
    """Forget the texts and fingerprints moderation kept for one customer (data erasure requests)."""
    deleted, _ = Judgement.objects.for_store(store).filter(customer_id=customer_id).delete()
    members_forget(store=store)
    return deleted
