"""Moderation services on a real database: verdicts, thresholds, the audit trail, history-based checks."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model

from tertulia.core.errors import ApiError
from tertulia.moderation import codes
from tertulia.moderation.models import Decision, Judgement, Policy, PolicyRevision
from tertulia.moderation.selectors import decisions_list, policy_get
from tertulia.moderation.services import (
    ContentItem,
    checks_run,
    content_moderate,
    decision_record,
    policy_update,
    reason_message,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def review(text, **extra):
    extra.setdefault("subject", "Zapatillas Trail Aurora")
    extra.setdefault("subject_terms", ["Zapatillas Trail Aurora", "Calzado", "ZTA-01"])
    return ContentItem(kind="review", text=text, **extra)


@pytest.mark.django_db
def test_clean_review_publishes_and_is_audited(store):
    verdict = content_moderate(store=store, item=review("Muy cómodas, la talla es la correcta y llegaron en dos días."),
                               content_type="review", content_id=1, now=NOW)
    assert verdict.action == "publish"
    assert verdict.triggered == []
    assert verdict.policy_version == 1
    decision = Decision.objects.get(store=store, content_type="review", content_id=1)
    assert decision.automatic and decision.decided_by == "system" and decision.action == "publish"
    assert decision.judgement_id == verdict.judgement_id


@pytest.mark.django_db
def test_negative_review_is_not_a_violation(store):
    text = ("Una estafa de zapatillas: se despegó la suela a la semana, la atención al cliente no contesta "
            "y el reembolso tardó un mes. No las compréis, son malísimas.")
    verdict = content_moderate(store=store, item=review(text), content_type="review", content_id=2, now=NOW)
    assert verdict.action == "publish", verdict.results


@pytest.mark.django_db
def test_insult_is_rejected_with_reason_and_evidence(store):
    verdict = content_moderate(store=store, item=review("Eres un imbécil, el vendedor no tiene ni idea"),
                               content_type="review", content_id=3, now=NOW)
    assert verdict.action == "reject"
    assert verdict.triggered[0] == codes.INSULT
    result = verdict.result(codes.INSULT)
    assert result.score >= 0.85 and any("imbécil" in e for e in result.evidence)
    assert type(result.score) is float
    decision = Decision.objects.get(content_id=3)
    assert decision.top_code == codes.INSULT
    assert {r["code"] for r in decision.results} >= {codes.INSULT}


@pytest.mark.django_db
def test_human_decision_is_audited_with_user_and_policy_version(store):
    user = get_user_model().objects.create_user("moderadora")
    verdict = content_moderate(store=store, item=review("Vaya mierda de cordones, se rompen"), content_type="review",
                               content_id=4, now=NOW)
    assert verdict.action == "hold"
    decision_record(store=store, content_type="review", content_id=4, action="approve", results=verdict.results,
                    policy_version=verdict.policy_version, decided_by=user, automatic=False, note="queja legítima",
                    now=NOW + timedelta(minutes=5))
    trail = decisions_list(store=store, content_type="review", content_id=4)
    assert [(d.action, d.automatic, d.decided_by) for d in trail] == [("hold", True, "system"),
                                                                       ("publish", False, "moderadora")]
    assert trail[1].decided_by_user == user and trail[1].judgement_id == verdict.judgement_id


@pytest.mark.django_db
def test_moderate_before_saving_then_link(store):
    verdict = content_moderate(store=store, item=review("Perfectas para correr por montaña."), content_type="review",
                               now=NOW)
    assert not Decision.objects.exists()
    decision_record(store=store, content_type="review", content_id=99, action=verdict.action, results=verdict.results,
                    policy_version=verdict.policy_version, decided_by="system", automatic=True,
                    judgement_id=verdict.judgement_id)
    assert Judgement.objects.get(pk=verdict.judgement_id).content_id == 99


@pytest.mark.django_db
def test_policy_thresholds_change_the_action(store):
    text = "Vaya mierda de cordones, se rompen"
    assert content_moderate(store=store, item=review(text), content_type="review", now=NOW).action == "hold"
    updated = policy_update(store=store, changes={"thresholds": {codes.RUDENESS: {"hold": 0.9, "reject": 0.95}}},
                            changed_by="owner")
    assert updated.version == 2
    verdict = content_moderate(store=store, item=review(text), content_type="review", now=NOW)
    assert verdict.action == "publish" and verdict.policy_version == 2
    policy_update(store=store, changes={"thresholds": {"default": {"hold": 0.1, "reject": 0.2}, codes.RUDENESS: None}})
    assert content_moderate(store=store, item=review(text), content_type="review", now=NOW).action == "reject"
    assert list(PolicyRevision.objects.filter(store=store).values_list("version", flat=True).order_by("version")) == [1, 2, 3]


@pytest.mark.django_db
def test_premoderation_holds_everything(store):
    policy_update(store=store, changes={"premoderate": True})
    assert content_moderate(store=store, item=review("Muy buenas."), content_type="review", now=NOW).action == "hold"


@pytest.mark.django_db
@pytest.mark.parametrize("changes, field, code", [
    ({"thresholds": {codes.INSULT: {"hold": 0.9, "reject": 0.5}}}, "thresholds.insult", "hold_above_reject"),
    ({"thresholds": {codes.INSULT: {"hold": 1.5}}}, "thresholds.insult.hold", "out_of_range"),
    ({"thresholds": {codes.INSULT: {"hold": "alto"}}}, "thresholds.insult.hold", "invalid_type"),
    ({"thresholds": {"spam": {"hold": 0.5}}}, "thresholds.spam", "unknown_code"),
    ({"thresholds": {"default": {"hold": 0.99}}}, "thresholds.default", "hold_above_reject"),
    ({"enabled_checks": ["insult", "nope"]}, "enabled_checks", "unknown_code"),
    ({"allowed_domains": ["no es un dominio"]}, "allowed_domains", "invalid_domain"),
    ({"window_days": 0}, "window_days", "out_of_range"),
    ({"colour": "red"}, "colour", "unknown_field"),
])
def test_policy_validation_errors(store, changes, field, code):
    with pytest.raises(ApiError) as caught:
        policy_update(store=store, changes=changes)
    error = caught.value
    assert error.status == 422 and error.code == "invalid_policy"
    assert (field, code) in {(d.field, d.code) for d in error.details}
    assert policy_get(store=store).version == 1
    assert not Policy.objects.filter(store=store, version__gt=1).exists()


def test_reason_messages_in_both_languages():
    for code in codes.REASON_CODES:
        es, en = reason_message(code, "es"), reason_message(code, "en")
        assert es and en and es != en
    assert "insult" in reason_message(codes.INSULT, "en").lower()
    assert reason_message(codes.INSULT, "fr") == reason_message(codes.INSULT, "es")


@pytest.mark.django_db
def test_checks_run_is_pure(store):
    results = checks_run(review("Eres un idiota"))
    assert {r.code for r in results} == set(codes.REASON_CODES)
    assert not Judgement.objects.exists()
    assert checks_run(review("Eres un idiota"), store=store)
    assert not Judgement.objects.exists()


@pytest.mark.django_db
def test_repetition_and_identities_from_the_stores_history(store, other_store):
    text = "Las zapatillas son comodísimas y la suela agarra de maravilla en terreno mojado, muy recomendables."
    first = content_moderate(store=store, item=review(text, author_name="Marta", device_id="dev-1", ip="83.1.2.3"),
                             content_type="review", content_id=10, now=NOW)
    assert first.action == "publish"
    again = content_moderate(store=store, item=review(text, author_name="Marta", device_id="dev-1", ip="83.1.2.3"),
                             content_type="review", content_id=11, now=NOW + timedelta(hours=1))
    assert codes.REPETITION in again.triggered
    # Another store never sees this store's history.
    elsewhere = content_moderate(store=other_store, item=review(text, author_name="Marta", device_id="dev-1"),
                                 content_type="review", content_id=10, now=NOW + timedelta(hours=1))
    assert codes.REPETITION not in elsewhere.triggered
    for name in ("Lucas", "Elena"):
        content_moderate(store=store, item=review("Me encantan, cinco estrellas.", author_name=name, device_id="dev-1"),
                         content_type="review", now=NOW + timedelta(hours=2))
    sock = content_moderate(store=store, item=review("Las mejores del mercado.", author_name="Sofía", device_id="dev-1"),
                            content_type="review", now=NOW + timedelta(hours=3))
    assert codes.MULTIPLE_IDENTITIES in sock.triggered
    # Past the window, history no longer counts.
    later = content_moderate(store=store, item=review(text, author_name="Marta", device_id="dev-1"), content_type="review",
                             now=NOW + timedelta(days=60))
    assert codes.REPETITION not in later.triggered


@pytest.mark.django_db
def test_device_and_ip_are_never_stored_raw(store):
    verdict = content_moderate(store=store, item=review("Bien.", device_id="localstorage-abc", ip="2001:db8::1"),
                               content_type="review", now=NOW)
    judgement = Judgement.objects.get(pk=verdict.judgement_id)
    assert judgement.device_hash and "localstorage" not in judgement.device_hash
    assert judgement.ip_hash and "2001" not in judgement.ip_hash
    # The same IPv6 /64 is one subscriber.
    other = content_moderate(store=store, item=review("Bien.", ip="2001:db8::2"), content_type="review", now=NOW)
    assert Judgement.objects.get(pk=other.judgement_id).ip_hash == judgement.ip_hash


@pytest.mark.django_db
def test_impersonating_staff_named_in_the_policy(store):
    policy_update(store=store, changes={"staff_names": ["Lucía Martín"], "brand_terms": ["Tienda Aurora"]})
    verdict = content_moderate(store=store, item=review("Os confirmo la garantía de cinco años.", author_name="Lucia Martin"),
                               content_type="answer", now=NOW)
    assert verdict.triggered == [codes.IMPERSONATION] and verdict.action == "hold"
    fine = content_moderate(store=store, item=review("Muy buenas.", author_name="María López"), content_type="review",
                            now=NOW)
    assert fine.action == "publish"


@pytest.mark.django_db
def test_links_to_the_stores_own_site_are_not_promotion(store):
    text = "Las compré en https://tienda-aurora.example/zapatillas y llegaron en dos días."
    assert codes.PROMOTIONAL in content_moderate(store=store, item=review(text), content_type="review", now=NOW).triggered
    policy_update(store=store, changes={"allowed_domains": ["tienda-aurora.example"]})
    assert codes.PROMOTIONAL not in content_moderate(store=store, item=review(text), content_type="review",
                                                     now=NOW).triggered


@pytest.mark.django_db
def test_every_decision_is_audited_in_order(store):
    user = get_user_model().objects.create_user("ana")
    verdict = content_moderate(store=store, item=review("Sígueme en Instagram @runner"), content_type="comment",
                               content_id=7, now=NOW)
    decision_record(store=store, content_type="comment", content_id=7, action="reject", results=verdict.results,
                    policy_version=verdict.policy_version, decided_by=user, automatic=False, now=NOW + timedelta(minutes=1))
    decision_record(store=store, content_type="comment", content_id=7, action="publish", results=[],
                    policy_version=verdict.policy_version, decided_by="ana", automatic=False, note="era del concurso",
                    now=NOW + timedelta(minutes=2))
    trail = decisions_list(store=store, content_type="comment", content_id=7)
    assert [d.action for d in trail] == [verdict.action, "reject", "publish"]
    assert trail[0].top_code == codes.PROMOTIONAL and trail[0].results[0]["code"] == codes.PROMOTIONAL
    assert trail[2].note == "era del concurso" and trail[2].decided_by == "ana"
    with pytest.raises(ValueError):
        decision_record(store=store, content_type="comment", content_id=7, action="maybe", results=[],
                        policy_version=1, decided_by="ana", automatic=False)


@pytest.mark.django_db
def test_erasing_a_customer_forgets_their_texts(store):
    from tertulia.moderation.services import judgements_erase

    content_moderate(store=store, item=review("Muy buenas.", customer_id=41), content_type="review", now=NOW)
    content_moderate(store=store, item=review("Muy buenas.", customer_id=42), content_type="review", now=NOW)
    assert judgements_erase(store=store, customer_id=41) == 1
    assert list(Judgement.objects.values_list("customer_id", flat=True)) == [42]


@pytest.mark.django_db
def test_history_keeps_no_personal_data(store):
    verdict = content_moderate(store=store, item=review("Escribidme a laura.gomez82@gmail.com o al 654 321 987"),
                               content_type="comment", now=NOW)
    assert codes.PERSONAL_DATA in verdict.triggered
    kept = Judgement.objects.get(pk=verdict.judgement_id).text
    assert "gmail" not in kept and "654" not in kept and "[…]" in kept


@pytest.mark.django_db
def test_judging_the_same_item_again_is_not_repetition(store):
    text = "Las zapatillas son comodísimas y la suela agarra de maravilla en terreno mojado, muy recomendables."
    item = review(text, author_name="Marta", device_id="dev-1")
    content_moderate(store=store, item=item, content_type="review", content_id=21, now=NOW)
    again = content_moderate(store=store, item=item, content_type="review", content_id=21, now=NOW + timedelta(hours=1))
    assert again.action == "publish", again.triggered
    assert Decision.objects.filter(content_id=21).count() == 2
