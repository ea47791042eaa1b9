"""ugc services: submissions of every kind, validation, replays, verified buyers, votes, flags, replies,
moderators' decisions and the queue, the summary version, and the author's e-mails."""

from datetime import timedelta

import pytest
from django.core import mail
from ugc_support import (
    T0,
    catalogue,
    delivered_order,
    image_bytes,
    review_token,
    scripted_moderation,
)

from tertulia.core.errors import ApiError
from tertulia.core.worker import run_worker
from tertulia.customers.services import consent_record
from tertulia.ugc import models as ugc_models
from tertulia.ugc import selectors, services
from tertulia.ugc.models import (
    Answer,
    Comment,
    ForumPost,
    ForumThread,
    ProductSummary,
    Question,
    Review,
    ReviewPhoto,
    Vote,
)
from tertulia.ugc.services import Author

pytestmark = pytest.mark.django_db


@pytest.fixture
def script(monkeypatch):
    return scripted_moderation(monkeypatch)


@pytest.fixture
def products(store):
    return catalogue(store)


def problems(error: ApiError) -> set[tuple[str, str]]:
    return {(d.field, d.code) for d in error.details}


def summary(product) -> ProductSummary:
    return ProductSummary.objects.get(product=product)


# --- reviews ---------------------------------------------------------------------------------------


def test_review_published_counts_in_the_aggregate(store, products, script):
    product = products["ACE-1"]
    result = services.review_submit(store=store, product=product, rating=2, title="Flojo", text="Me llegó tarde y sabe plano.",
                                    author=Author(display_name="Ana", device_id="device-0001", ip="203.0.113.5"))
    assert result.status == "published" and result.reasons == [] and not result.replayed
    review = Review.objects.get(pk=result.id)
    assert review.rating == 2 and review.display_name == "Ana" and not review.anonymous
    # Hashes, never the raw values.
    assert review.ip_hash and "203.0.113.5" not in review.ip_hash and review.device_hash
    row = summary(product)
    assert row.review_count == 1 and row.rating_sum == 2 and row.histogram == {"1": 0, "2": 1, "3": 0, "4": 0, "5": 0}
    # What ugc handed to moderation: the kind, the subject and what it should be about.
    seen = script.seen[-1]
    assert seen["kind"] == "review" and seen["content_type"] == "review" and seen["content_id"] == review.pk
    assert seen["subject"] == product.title and product.sku in seen["subject_terms"] and "Aceites" in seen["subject_terms"]


def test_negative_review_is_not_a_violation(store, products):
    """With the real moderation (or none yet), a one-star opinion without abuse is published."""
    result = services.review_submit(store=store, product=products["ACE-1"], rating=1,
                                    text="No me gustó nada: el aceite llegó rancio y el envío tardó dos semanas.",
                                    author=Author(device_id="device-neg-01"))
    assert result.status == "published", result


def test_held_review_gives_reasons_in_the_authors_language(store, products, script):
    result = services.review_submit(store=store, product=products["ACE-1"], rating=5, text="Compra aquí [hold:promotional]",
                                    author=Author(answer_language="en"))
    assert result.status == "held"
    assert [r.code for r in result.reasons] == ["promotional"]
    assert "moderator" in result.message  # English
    spanish = services.review_submit(store=store, product=products["ACE-2"], rating=5, text="Otra [reject:insult]",
                                     author=Author(answer_language="es"))
    assert spanish.status == "rejected" and "no sigue" in spanish.message
    # Held and rejected reviews do not count.
    assert summary(products["ACE-1"]).review_count == 0


@pytest.mark.parametrize(("fields", "expected"), [
    ({"rating": 0}, {("rating", "out_of_range")}),
    ({"rating": 6}, {("rating", "out_of_range")}),
    ({"rating": True}, {("rating", "out_of_range")}),
    ({"rating": None}, {("rating", "required")}),
    ({"text": "   "}, {("text", "required")}),
    ({"text": "x" * 5001}, {("text", "too_long")}),
    ({"text": "nul\x00byte"}, {("text", "control_characters")}),
    ({"title": "t" * 201}, {("title", "too_long")}),
    ({"text": 12}, {("text", "invalid_type")}),
    ({"language": "fr"}, {("language", "unsupported_language")}),
    ({"author": Author(email="not-an-email")}, {("email", "invalid_email")}),
    ({"author": Author(device_id="short")}, {("device_id", "invalid_device_id")}),
    ({"author": Author(display_name="n" * 81)}, {("display_name", "too_long")}),
    ({"client_key": "bad key with spaces"}, {("Idempotency-Key", "invalid_idempotency_key")}),
    ({"token": "forged"}, {("token", "invalid_token")}),
    ({"photos": [b"GIF89a not really"]}, {("photos[0]", "unsupported_type")}),
    ({"photos": [image_bytes()] * 5}, {("photos", "too_many")}),
])
def test_bad_review_input_stores_nothing(store, products, fields, expected):
    arguments = {"rating": 4, "text": "Bien", "title": "", "author": Author(), "language": ""} | fields
    with pytest.raises(ApiError) as caught:
        services.review_submit(store=store, product=products["ACE-1"], **arguments)
    assert caught.value.status == 422
    assert expected <= problems(caught.value)
    assert not Review.objects.exists() and not ReviewPhoto.objects.exists()


def test_all_problems_reported_at_once(store, products):
    with pytest.raises(ApiError) as caught:
        services.review_submit(store=store, product=products["ACE-1"], rating=9, text="", author=Author(email="x"))
    assert {"rating", "text", "email"} <= {d.field for d in caught.value.details}


def test_replay_by_client_key_and_by_content(store, products, script):
    product = products["ACE-1"]
    first = services.review_submit(store=store, product=product, rating=4, text="Muy rico", client_key="k-123",
                                   author=Author(device_id="device-0002"), now=T0)
    again = services.review_submit(store=store, product=product, rating=4, text="Muy rico", client_key="k-123",
                                   author=Author(device_id="device-0002"), now=T0 + timedelta(hours=5))
    assert again.id == first.id and again.replayed
    # No key: the same author and text within the replay window is the same submission...
    second = services.review_submit(store=store, product=product, rating=3, text="Repetido", now=T0,
                                    author=Author(device_id="device-0003"))
    retry = services.review_submit(store=store, product=product, rating=3, text="Repetido", now=T0 + timedelta(seconds=20),
                                   author=Author(device_id="device-0003"))
    assert retry.id == second.id and retry.replayed
    # ...but not after it, and not from someone else.
    later = services.review_submit(store=store, product=product, rating=3, text="Repetido", now=T0 + timedelta(minutes=5),
                                   author=Author(device_id="device-0003"))
    other = services.review_submit(store=store, product=product, rating=3, text="Repetido", now=T0 + timedelta(seconds=20),
                                   author=Author(device_id="device-0004"))
    assert len({second.id, later.id, other.id}) == 3
    assert Review.objects.count() == 4
    assert len(script.seen) == 4  # replays are not judged again


def test_verified_by_review_link_and_one_review_per_order_item(store, products, script):
    order = delivered_order(store, email="lucia@example.com", skus=["ACE-1", "ACE-2"], order_id="LT-1")
    token = review_token(order)
    first = services.review_submit(store=store, product=products["ACE-1"], rating=5, text="Buenísimo", token=token,
                                   author=Author(display_name="Lucía"))
    review = Review.objects.get(pk=first.id)
    assert review.verified_buyer and review.order_id == order.pk and review.customer_id == order.customer_id
    edited = services.review_submit(store=store, product=products["ACE-1"], rating=3, text="Pensándolo mejor, normal",
                                    token=token, author=Author(display_name="Lucía"))
    assert edited.id == first.id and edited.edited
    assert Review.objects.filter(order=order).count() == 1
    assert Review.objects.get(pk=first.id).rating == 3
    assert summary(products["ACE-1"]).rating_sum == 3
    # A product that is not in that order cannot be reviewed with its link.
    with pytest.raises(ApiError) as caught:
        services.review_submit(store=store, product=products["QUE-1"], rating=5, text="x", token=token)
    assert ("token", "not_in_order") in problems(caught.value)


def test_review_link_of_another_store_is_refused(store, other_store, products):
    other_products = catalogue(other_store)
    order = delivered_order(other_store, email="x@example.com", skus=["ACE-1"], order_id="O-9")
    with pytest.raises(ApiError) as caught:
        services.review_submit(store=store, product=products["ACE-1"], rating=5, text="x", token=review_token(order))
    assert ("token", "invalid_token") in problems(caught.value)
    assert services.review_submit(store=other_store, product=other_products["ACE-1"], rating=5, text="ok",
                                  token=review_token(order)).status == "published"


def test_verified_when_matched_to_an_order_of_that_customer(store, products):
    order = delivered_order(store, email="pedro@example.com", skus=["ACE-2"], order_id="LT-2")
    buyer = services.review_submit(store=store, product=products["ACE-2"], rating=4, text="Suave",
                                   author=Author(customer_id=order.customer_id))
    not_bought = services.review_submit(store=store, product=products["ACE-1"], rating=4, text="Suave",
                                        author=Author(customer_id=order.customer_id))
    typed_email = services.review_submit(store=store, product=products["ACE-2"], rating=4, text="Dice que compró",
                                         author=Author(email="pedro@example.com"))
    assert Review.objects.get(pk=buyer.id).verified_buyer
    assert not Review.objects.get(pk=not_bought.id).verified_buyer
    # A typed e-mail proves nothing: anyone can type a buyer's address.
    assert not Review.objects.get(pk=typed_email.id).verified_buyer


def test_photos_are_reencoded_without_metadata(store, products):
    result = services.review_submit(store=store, product=products["ACE-1"], rating=5, text="Foto",
                                    photos=[image_bytes(exif_gps=True, size=(80, 40)), image_bytes("PNG")])
    photos = list(ReviewPhoto.objects.filter(review_id=result.id).order_by("position"))
    assert [p.content_type for p in photos] == ["image/jpeg", "image/webp"]
    data = photos[0].file.open("rb").read()
    assert b"SpyCam" not in data and b"secret-software" not in data and b"hidden comment" not in data
    assert b"Exif" not in data
    # The EXIF orientation was applied before it was dropped: 80x40 rotated is 40x80.
    assert (photos[0].width, photos[0].height) == (40, 80)


def test_store_reply_bumps_the_version(store, products):
    result = services.review_submit(store=store, product=products["ACE-1"], rating=1, text="Llegó roto")
    before = summary(products["ACE-1"]).version
    services.store_reply(store=store, review_id=result.id, text="Lo sentimos, te enviamos otro hoy.")
    review = Review.objects.get(pk=result.id)
    assert review.reply_text.startswith("Lo sentimos") and review.reply_at is not None
    assert summary(products["ACE-1"]).version == before + 1
    services.store_reply(store=store, review_id=result.id, text="")
    assert Review.objects.get(pk=result.id).reply_at is None


def test_store_reply_to_another_stores_review_is_not_found(store, other_store, products):
    result = services.review_submit(store=store, product=products["ACE-1"], rating=1, text="Llegó roto")
    with pytest.raises(ApiError) as caught:
        services.store_reply(store=other_store, review_id=result.id, text="hola")
    assert caught.value.status == 404


# --- votes and flags -------------------------------------------------------------------------------


def test_one_helpful_vote_per_device(store, products):
    review = services.review_submit(store=store, product=products["ACE-1"], rating=4, text="Útil")
    first = services.vote_cast(store=store, content_type="review", object_id=review.id, device_id="device-vote-1")
    again = services.vote_cast(store=store, content_type="review", object_id=review.id, device_id="device-vote-1")
    other = services.vote_cast(store=store, content_type="review", object_id=review.id, device_id="device-vote-2")
    assert (first.counted, again.counted, other.counted) == (True, False, True)
    assert other.helpful == 2 and Vote.objects.count() == 2
    with pytest.raises(ApiError) as caught:
        services.vote_cast(store=store, content_type="review", object_id=review.id)
    assert ("device_id", "required") in problems(caught.value)


def test_votes_only_on_published_content_of_the_store(store, other_store, products, script):
    held = services.review_submit(store=store, product=products["ACE-1"], rating=4, text="x [hold:rudeness]")
    with pytest.raises(ApiError) as caught:
        services.vote_cast(store=store, content_type="review", object_id=held.id, device_id="device-vote-1")
    assert caught.value.status == 404
    published = services.review_submit(store=store, product=products["ACE-1"], rating=4, text="ok")
    with pytest.raises(ApiError):
        services.vote_cast(store=other_store, content_type="review", object_id=published.id, device_id="device-vote-1")


def test_enough_flags_send_an_item_back_to_a_person(store, products, script, settings):
    settings.TERTULIA_UGC_FLAGS_TO_HOLD = 2
    review = services.review_submit(store=store, product=products["ACE-1"], rating=5, text="Publicada")
    first = services.flag_raise(store=store, content_type="review", object_id=review.id, reason="spam", device_id="device-flag-1")
    repeat = services.flag_raise(store=store, content_type="review", object_id=review.id, reason="spam", device_id="device-flag-1")
    assert first.counted and not first.held and not repeat.counted
    second = services.flag_raise(store=store, content_type="review", object_id=review.id, reason="offensive", ip="198.51.100.7")
    assert second.held
    assert Review.objects.get(pk=review.id).status == "held"
    assert summary(products["ACE-1"]).review_count == 0
    assert script.human[-1]["action"] == "hold" and script.human[-1]["user"] is None
    with pytest.raises(ApiError) as caught:
        services.flag_raise(store=store, content_type="review", object_id=review.id, reason="boring")
    assert ("reason", "invalid_choice") in problems(caught.value)


# --- questions, answers, FAQ -----------------------------------------------------------------------


def test_questions_answers_and_the_faq(store, products, django_user_model):
    product = products["ACE-1"]
    staff = django_user_model.objects.create_user("equipo", password="x")
    q1 = services.question_ask(store=store, product=product, text="¿Es de cosecha temprana?")
    q2 = services.question_ask(store=store, product=product, text="¿Sirve para freír?")
    services.question_ask(store=store, product=product, text="¿Sin respuesta?")
    staff_answer = services.answer_post(store=store, question_id=q1.id, text="Sí, de octubre.", staff_user=staff)
    answer = Answer.objects.get(pk=staff_answer.id)
    assert answer.by_staff and answer.status == "published" and answer.display_name == store.name
    order = delivered_order(store, email="comprador@example.com", skus=["ACE-1"], order_id="LT-7")
    buyer = services.answer_post(store=store, question_id=q2.id, text="Yo lo uso para freír y va bien.",
                                 token=review_token(order))
    weak = services.answer_post(store=store, question_id=q2.id, text="Ni idea.")
    assert Answer.objects.get(pk=buyer.id).verified_buyer and not Answer.objects.get(pk=weak.id).verified_buyer
    # The buyer's answer becomes FAQ once someone finds it helpful; staff answers are in from the start.
    faq = selectors.faq_items(store_id=store.pk, product_id=product.pk)
    assert [item["question_id"] for item in faq] == [q1.id]
    services.vote_cast(store=store, content_type="answer", object_id=buyer.id, device_id="device-faq-1")
    faq = selectors.faq_items(store_id=store.pk, product_id=product.pk)
    assert [(item["question_id"], item["answer_id"]) for item in faq] == [(q2.id, buyer.id), (q1.id, staff_answer.id)]
    services.question_pin(store=store, question_id=q1.id, pinned=True)
    assert selectors.faq_items(store_id=store.pk, product_id=product.pk)[0]["question_id"] == q1.id


def test_answer_to_unknown_or_unpublished_question(store, other_store, products, script):
    held = services.question_ask(store=store, product=products["ACE-1"], text="x [hold:off_topic]")
    for store_, question_id in ((store, held.id), (store, 999999), (other_store, held.id)):
        with pytest.raises(ApiError) as caught:
            services.answer_post(store=store_, question_id=question_id, text="respuesta")
        assert caught.value.status == 404


def test_earlier_buyers_who_accept_email_are_invited_to_answer(store, products):
    product = products["ACE-1"]
    for n, consent in enumerate(["subscribed", "unsubscribed", "subscribed"]):
        order = delivered_order(store, email=f"buyer{n}@example.com", skus=["ACE-1"], order_id=f"INV-{n}",
                                language="en" if n == 2 else "es")
        consent_record(store=store, customer_id=order.customer_id, channel="email", status=consent, source="test",
                       occurred_at=T0)
    delivered_order(store, email="other@example.com", skus=["ACE-2"], order_id="INV-X")
    question = services.question_ask(store=store, product=product, text="¿Cuánto dura abierto?")
    run_worker(once=True, name="t", housekeeping=False)
    recipients = sorted(m.to[0] for m in mail.outbox)
    assert recipients == ["buyer0@example.com", "buyer2@example.com"]
    english = next(m for m in mail.outbox if m.to == ["buyer2@example.com"])
    assert "question" in english.subject and "¿Cuánto dura abierto?" in english.body
    assert Question.objects.get(pk=question.id).buyers_invited_at is not None


# --- comments, testimonials, forum -----------------------------------------------------------------


def test_threaded_comments(store, products):
    product = products["ACE-1"]
    root = services.comment_post(store=store, product=product, text="¿Alguien lo ha probado en ensalada?")
    reply = services.comment_post(store=store, product=product, text="Sí, muy bien.", parent_id=root.id)
    services.comment_post(store=store, product=product, text="Gracias", parent_id=reply.id)
    state = selectors.product_state(store_slug=store.slug, sku=product.sku)
    page = selectors.comments_page(state=state)
    assert page["items"][0]["id"] == root.id
    assert page["items"][0]["replies"][0]["replies"][0]["text"] == "Gracias"
    assert Comment.objects.get(pk=reply.id).depth == 1
    with pytest.raises(ApiError) as caught:
        services.comment_post(store=store, product=products["ACE-2"], text="x", parent_id=root.id)
    assert ("parent_id", "not_found") in problems(caught.value)


def test_testimonials_and_forum(store, products):
    testimonial = services.testimonial_submit(store=store, text="Siempre llega todo perfecto.", rating=5,
                                              author=Author(display_name="Marta"))
    assert ugc_models.Testimonial.objects.get(pk=testimonial.id).status == "published"
    category = products["ACE-1"].category
    thread = services.forum_post(store=store, category=category, title="¿Cómo conservar el aceite?",
                                 text="¿Luz, temperatura?")
    post = services.forum_post(store=store, thread_id=thread.id, text="Lejos de la luz y del calor.")
    assert ForumThread.objects.get(pk=thread.id).post_count == 1
    assert ForumPost.objects.get(pk=post.id).thread_id == thread.id
    with pytest.raises(ApiError) as caught:
        services.forum_post(store=store, category=category, title="", text="sin título")
    assert ("title", "required") in problems(caught.value)


# --- decisions and the queue (interface 2) ---------------------------------------------------------


def test_queue_and_human_decisions(store, other_store, products, script, django_user_model):
    moderator = django_user_model.objects.create_user("mod", password="x")
    held = services.review_submit(store=store, product=products["ACE-1"], rating=4, text="Mira mi web [hold:promotional]",
                                  author=Author(email="autora@example.com", answer_language="en"), language="en")
    held_q = services.question_ask(store=store, product=products["ACE-1"], text="¿Y esto? [hold:off_topic]")
    services.review_submit(store=store, product=products["ACE-2"], rating=4, text="Publicada")
    queue = selectors.moderation_queue(store=store)
    assert [(q.content_type, q.id) for q in queue] == [("review", held.id), ("question", held_q.id)]
    assert queue[0].reasons[0].code == "promotional" and queue[0].email_known and queue[0].subject == products["ACE-1"].title
    assert [q.id for q in selectors.moderation_queue(store=store, code="off_topic")] == [held_q.id]
    assert [q.id for q in selectors.moderation_queue(store=store, content_type="review")] == [held.id]
    assert selectors.moderation_queue(store=other_store) == []

    version = summary(products["ACE-1"]).version
    mail.outbox.clear()
    # Another store's moderator cannot touch it: ids of other stores are skipped.
    assert services.content_decide(store=other_store, content_type="review", ids=[held.id], action="approve",
                                   user=moderator) == 0
    assert services.content_decide(store=store, content_type="review", ids=[held.id], action="approve",
                                   user=moderator) == 1
    assert services.content_decide(store=store, content_type="review", ids=[held.id], action="approve",
                                   user=moderator) == 0
    review = Review.objects.get(pk=held.id)
    assert review.status == "published" and review.decided_by == "mod"
    assert script.human[-1]["action"] == "publish" and script.human[-1]["user"] == moderator
    assert summary(products["ACE-1"]).version > version and summary(products["ACE-1"]).review_count == 1
    run_worker(once=True, name="t", housekeeping=False)
    notice = [m for m in mail.outbox if m.to == ["autora@example.com"]]
    assert notice and "published" in notice[-1].subject

    assert services.content_decide(store=store, content_type="question", ids=[held_q.id], action="reject",
                                   user=moderator) == 1
    assert Question.objects.get(pk=held_q.id).status == "rejected"
    assert selectors.moderation_queue(store=store) == []
    with pytest.raises(ApiError):
        services.content_decide(store=store, content_type="review", ids=[held.id], action="maybe", user=moderator)


def test_author_told_by_email_when_held(store, products, script):
    services.review_submit(store=store, product=products["ACE-1"], rating=3, text="Escríbeme [hold:personal_data]",
                           author=Author(email="Autor@Example.com", answer_language="es"))
    run_worker(once=True, name="t", housekeeping=False)
    assert [m.to for m in mail.outbox] == [["autor@example.com"]]
    assert "moderador" in mail.outbox[0].body


def test_rejection_notice_over_real_smtp(store, products, script, settings):
    """The author's e-mail goes through Django's SMTP backend to a real (in-process) SMTP server."""
    import email
    import email.policy

    from fakes.smtp import SmtpServer

    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        services.review_submit(store=store, product=products["ACE-1"], rating=1,
                               text="<script>alert(1)</script> fuera [reject:insult]",
                               author=Author(email="writer@example.com"), language="en")
        run_worker(once=True, name="t", housekeeping=False)
    assert [m["rcpt_tos"] for m in server.handler.messages] == [["writer@example.com"]]
    message = email.message_from_bytes(server.handler.messages[0]["data"], policy=email.policy.default)
    assert "did not publish" in message["Subject"]
    assert message.get_content_type() == "text/plain"  # plain text: nothing in it can run
    body = message.get_content()
    assert "Negative opinions are welcome" in body and "<script>alert(1)</script>" in body


def test_author_data_erase_anonymises_what_a_person_wrote(store, products):
    order = delivered_order(store, email="olvidame@example.com", skus=["ACE-1"], order_id="GDPR-1")
    mine = services.review_submit(store=store, product=products["ACE-1"], rating=4, text="Muy rico",
                                  token=review_token(order), author=Author(display_name="Lucía G.", device_id="device-gdpr-1"))
    by_email = services.question_ask(store=store, product=products["ACE-2"], text="¿Pica?",
                                     author=Author(display_name="Lucía", email="Olvidame@example.com"))
    other = services.review_submit(store=store, product=products["ACE-1"], rating=5, text="De otra persona",
                                   author=Author(display_name="Pedro"))
    assert services.author_data_erase(store=store, customer_id=order.customer_id, email="olvidame@example.com") == 2
    review = Review.objects.get(pk=mine.id)
    assert (review.display_name, review.anonymous, review.customer_id, review.device_hash) == ("", True, None, "")
    assert review.text == "Muy rico" and review.verified_buyer
    question = Question.objects.get(pk=by_email.id)
    assert question.author_email == "" and question.display_name == ""
    assert Review.objects.get(pk=other.id).display_name == "Pedro"
