"""Journey messages: validation of templates, rendering in both languages, link rewriting, escaping, preview."""

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tertulia.channels import tracking
from tertulia.channels.models import Delivery
from tertulia.events.services import events_ingest
from tertulia.journeys import rendering
from tertulia.journeys.rendering import (
    DEFAULT_STEPS,
    TEMPLATE_VARIABLES,
    default_templates,
    delivery_render,
    journey_preview,
    preview_context,
    templates_validate,
)
from tests.conftest import make_event

NOW = datetime(2025, 3, 14, 18, 30, tzinfo=UTC)


def email(es_text: str = "Hola {{ first_name }}. Baja: {{ unsubscribe_url }}", en_text: str | None = None,
          **extra) -> dict:
    en_text = en_text if en_text is not None else es_text
    return {"es": {"subject": "Hola", "text": es_text, **extra}, "en": {"subject": "Hi", "text": en_text, **extra}}


def codes(errors) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in errors]


def delivery(*, pk: int = 7, journey_key: str = "abandoned_cart", step_key: str = "email_1", channel: str = "email",
             store=None) -> Delivery:
    made = Delivery(pk=pk, journey_key=journey_key, step_key=step_key, channel=channel, due_at=NOW)
    if store is not None:
        made.store = store
    return made


def cart_context(**changes) -> dict:
    context = preview_context(journey_key="abandoned_cart", language="es", now=NOW)
    context.update(changes)
    return context


# --- Validation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("journey_key", "step_key"), [(j, s) for j, steps in DEFAULT_STEPS.items() for s in steps])
def test_every_default_template_is_valid(journey_key, step_key):
    channel = DEFAULT_STEPS[journey_key][step_key]
    templates = default_templates(journey_key, step_key)
    assert set(templates) == {"es", "en"}
    assert templates_validate(journey_key=journey_key, channel=channel, templates=templates, field="t") == []
    if step_key != "confirm":  # every other step also has a short text for a variant on SMS or a DM
        for short in ("sms", "social_dm"):
            short_templates = default_templates(journey_key, step_key, short)
            assert templates_validate(journey_key=journey_key, channel=short, templates=short_templates) == []


def test_syntax_error_names_the_field_and_the_line():
    templates = email(es_text="Hola\n{% if first_name %}{{ first_name }}\n{{ unsubscribe_url }}")
    errors = templates_validate(journey_key="abandoned_cart", channel="email", templates=templates,
                                field="steps[1].templates")
    assert ("steps[1].templates.es.text", "template_syntax") in codes(errors)
    message = next(e.message for e in errors if e.field == "steps[1].templates.es.text")
    assert "line 2" in message and "if" in message


def test_unknown_filter_is_a_syntax_error():
    errors = templates_validate(journey_key="winback", channel="email",
                                templates=email(es_text="{{ first_name|shout }} {{ unsubscribe_url }}"))
    assert ("templates.es.text", "template_syntax") in codes(errors)


@pytest.mark.parametrize("source", [
    "Hola {{ frist_name }}",  # a typo
    "{% for item in basket %}{{ item.name }}{% endfor %}",  # a loop over nothing we provide
    "{% if coupon %}x{% endif %}",  # a condition
    "{% if first_name and not coupon %}x{% endif %}",  # inside a compound condition
    "{{ cart_total|money:moneda }}",  # a filter argument
    "{% with total=grand_total %}{{ total }}{% endwith %}",
    "{% for item in items %}{% endfor %}{{ item.name }}",  # the loop variable outside its loop
    "{{ referral_code }}",  # a variable of another journey
])
def test_unknown_variables_are_refused_wherever_they_hide(source):
    errors = templates_validate(journey_key="abandoned_cart", channel="email",
                                templates=email(es_text=source + " {{ unsubscribe_url }}"), field="steps[0].templates")
    assert ("steps[0].templates.es.text", "unknown_variable") in codes(errors), errors
    assert "This message can use" in errors[0].message


def test_loop_variables_and_forloop_are_known_inside_the_loop():
    source = ("{% for item in items %}{{ forloop.counter }}. {{ item.name }} {{ item.price|money:currency }}"
              "{% empty %}-{% endfor %} {{ answer_urls.price }} {{ unsubscribe_url }}")
    assert templates_validate(journey_key="abandoned_cart", channel="email", templates=email(es_text=source)) == []


def test_both_languages_are_required():
    templates = email()
    del templates["en"]
    errors = templates_validate(journey_key="thank_you", channel="email", templates=templates, field="steps[0].templates")
    assert codes(errors) == [("steps[0].templates.en", "missing_language")]


def test_unknown_language_and_wrong_shapes():
    assert codes(templates_validate(journey_key="thank_you", channel="email", templates=[])) == [
        ("templates", "invalid_type")]
    templates = {**email(), "fr": {"subject": "Salut", "text": "{{ unsubscribe_url }}"}}
    assert ("templates.fr", "unknown_language") in codes(
        templates_validate(journey_key="thank_you", channel="email", templates=templates))
    templates = email()
    templates["es"]["text"] = 42
    assert ("templates.es.text", "invalid_type") in codes(
        templates_validate(journey_key="thank_you", channel="email", templates=templates))


def test_email_must_carry_the_unsubscribe_link_in_text_and_html():
    errors = templates_validate(journey_key="thank_you", channel="email",
                                templates=email(es_text="Gracias {{ first_name }}", en_text="Thanks {# {{ unsubscribe_url }} #}"),
                                field="steps[0].templates")
    assert ("steps[0].templates.es.text", "missing_unsubscribe") in codes(errors)
    assert ("steps[0].templates.en.text", "missing_unsubscribe") in codes(errors)  # a comment does not count
    html_without = email(html="<p>Gracias</p>")
    errors = templates_validate(journey_key="thank_you", channel="email", templates=html_without)
    assert ("templates.es.html", "missing_unsubscribe") in codes(errors)


def test_sms_must_say_how_to_opt_out():
    def sms(text):
        return {"es": {"text": text}, "en": {"text": text}}

    errors = templates_validate(journey_key="abandoned_cart", channel="sms",
                                templates=sms("Tu cesta: {{ recovery_url }}"), field="steps[1].templates")
    assert codes(errors) == [("steps[1].templates.es.text", "missing_opt_out"),
                             ("steps[1].templates.en.text", "missing_opt_out")]
    assert templates_validate(journey_key="abandoned_cart", channel="sms", templates=sms("Tu cesta. {{ opt_out }}")) == []
    assert templates_validate(journey_key="abandoned_cart", channel="sms", templates=sms("Responde BAJA. Reply STOP")) == []


def test_sms_parts_and_length():
    errors = templates_validate(journey_key="abandoned_cart", channel="sms",
                                templates={"es": {"text": "{{ opt_out }}", "html": "<p>x</p>"},
                                           "en": {"text": ("x" * 1700) + "{{ opt_out }}"}})
    assert ("templates.es.html", "unknown_part") in codes(errors)
    assert ("templates.en.text", "too_long") in codes(errors)


def test_email_needs_subject_and_text():
    errors = templates_validate(journey_key="welcome", channel="email",
                                templates={"es": {"text": "{{ unsubscribe_url }}"}, "en": {"subject": "Hi", "text": " "}})
    assert ("templates.es.subject", "required") in codes(errors)
    assert ("templates.en.text", "required") in codes(errors)


@pytest.mark.parametrize(("source", "code"), [
    ('{% include "dashboard/base.html" %}', "tag_not_allowed"),
    ("{% load static %}", "template_syntax"),  # the engine knows no libraries at all
    ("{% debug %}", "tag_not_allowed"),
    ("{% autoescape off %}{{ first_name }}{% endautoescape %}", "tag_not_allowed"),
    ("{{ first_name|safe }}", "filter_not_allowed"),
    ("{% firstof first_name as name %}", "tag_not_allowed"),
])
def test_tags_and_filters_that_could_leak_or_unescape_are_refused(source, code):
    errors = templates_validate(journey_key="welcome", channel="email",
                                templates=email(es_text="x {{ unsubscribe_url }}", html=source + " {{ unsubscribe_url }}"))
    assert ("templates.es.html", code) in codes(errors), errors


def test_unknown_journey_and_channel():
    assert codes(templates_validate(journey_key="nope", channel="email", templates=email())) == [
        ("templates", "unknown_journey")]
    assert codes(templates_validate(journey_key="welcome", channel="fax", templates=email())) == [
        ("templates", "unknown_channel")]


def test_template_variables_cover_the_engine_context():
    assert {"items", "recovery_url", "discount_code", "answer_urls", "unsubscribe_url"} <= TEMPLATE_VARIABLES["abandoned_cart"]
    assert "referral_code" not in TEMPLATE_VARIABLES["abandoned_cart"]
    assert {"confirm_url", "first_name", "store_name", "store_url", "opt_out"} <= TEMPLATE_VARIABLES["welcome"]


# --- Rendering ----------------------------------------------------------------------------------------

def test_abandoned_cart_email_in_spanish_and_english():
    templates = default_templates("abandoned_cart", "email_1")
    spanish = delivery_render(delivery=delivery(), templates=templates, context=cart_context(), language="es")
    assert spanish.language == "es"
    assert spanish.subject == "Lucía, ¿algo te ha hecho dudar?"
    assert "Taza de gres esmaltada × 2: 14,90 €" in spanish.text
    assert "Total: 39,30 €" in spanish.text
    assert "Solo estaba mirando" in spanish.html and '<html lang="es">' in spanish.html
    english = delivery_render(delivery=delivery(), templates=templates,
                              context={**cart_context(), "first_name": "Emma"}, language="en-GB")
    assert english.language == "en"
    assert english.subject == "Emma, did something stop you?"
    assert "Total: €39.30" in english.text and "I was just looking" in english.text


def test_sms_with_discount_code_expiry_and_opt_out_in_the_person_time_zone():
    context = cart_context(timezone="Europe/Madrid")
    rendered = delivery_render(delivery=delivery(step_key="sms_1", channel="sms"),
                               templates=default_templates("abandoned_cart", "sms_1"), context=context, language="es")
    # 48 hours after 18:30 UTC on 14 March is 19:30 in Madrid on the 16th.
    assert "Con VUELVE-7K2Q tienes un 10% de descuento hasta el 16/3 a las 19:30" in rendered.text
    assert rendered.text.endswith("Para darte de baja, responde BAJA.")
    assert rendered.html == "" and rendered.subject == "" and rendered.headers == {}
    english = delivery_render(delivery=delivery(step_key="sms_1", channel="sms"),
                              templates=default_templates("abandoned_cart", "sms_1"), context=context, language="en")
    assert "10% off until Mar 16, 19:30" in english.text and english.text.endswith("Reply STOP to opt out.")


def test_the_sms_step_as_an_e_mail_without_a_discount_code():
    context = cart_context(discount_code="", discount_percent="", discount_expires_at="")
    rendered = delivery_render(delivery=delivery(step_key="sms_1"), templates=default_templates("abandoned_cart", "sms_1",
                                                                                                "email"),
                               context=context, language="es")
    assert rendered.subject == "Tu cesta te sigue esperando"
    assert "Tu cesta en La Alacena sigue esperándote." in rendered.text and "código" not in rendered.text
    assert "código" not in rendered.html and "% de descuento" not in rendered.html


def test_sms_without_a_discount_still_reads_well():
    context = cart_context(discount_code="", discount_percent="", discount_expires_at="")
    rendered = delivery_render(delivery=delivery(step_key="sms_1", channel="sms"),
                               templates=default_templates("abandoned_cart", "sms_1"), context=context, language="es")
    assert rendered.text == (f"La Alacena: tu cesta te espera: {tracking.tracked_url(7, 0)} "
                             "Para darte de baja, responde BAJA.")


def test_dates_given_as_iso_strings_are_formatted_like_datetimes():
    context = cart_context(discount_expires_at="2025-03-16T18:30:00Z")
    rendered = delivery_render(delivery=delivery(step_key="sms_1", channel="sms"),
                               templates=default_templates("abandoned_cart", "sms_1"), context=context, language="es")
    assert "hasta el 16/3 a las 18:30" in rendered.text


def test_language_falls_back_to_the_store_then_spanish(store):
    templates = default_templates("thank_you", "email_1")
    context = preview_context(journey_key="thank_you", language="es", now=NOW)
    store.language = "en"
    assert delivery_render(delivery=delivery(store=store), templates=templates, context=context, language="").language == "en"
    assert delivery_render(delivery=delivery(store=store), templates=templates, context=context, language="fr").language == "en"
    assert delivery_render(delivery=delivery(), templates=templates, context=context, language="fr").language == "es"
    assert delivery_render(delivery=delivery(), templates=templates, context=context, language=None).language == "es"


def _token_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[1]


def test_every_link_goes_through_the_click_redirect_except_our_own():
    templates = email(
        es_text="Mira https://tienda.example/a?x=1&y=2. Y (https://tienda.example/b). {{ recovery_url }} "
                "Otra vez https://tienda.example/a?x=1&y=2 {{ answer_urls.price }} {{ unsubscribe_url }}",
        html='<a href="{{ recovery_url }}">cesta</a> <a href=\'https://tienda.example/c?p=1&amp;q=2\'>c</a> '
             '<a href="mailto:hola@tienda.example">m</a> <img src="https://cdn.example/i.png"> '
             '<a href="{{ answer_urls.other }}">otra</a> <a href="{{ unsubscribe_url }}">baja</a>')
    rendered = delivery_render(delivery=delivery(pk=31), templates=templates, context=cart_context(), language="es")
    assert rendered.links == ["https://tienda.example/a?x=1&y=2", "https://tienda.example/b",
                              "https://tienda.example/cart/recover/sample", "https://tienda.example/c?p=1&q=2"]
    base = "http://127.0.0.1:8000"
    assert f"Mira {tracking.tracked_url(31, 0)}. Y ({tracking.tracked_url(31, 1)})." in rendered.text
    assert rendered.text.count(tracking.tracked_url(31, 0)) == 2  # one URL, one index
    assert tracking.answer_url(31, "price") in rendered.text and tracking.unsubscribe_url(31) in rendered.text
    assert "tienda.example" not in rendered.text
    hrefs = re.findall(r'href="([^"]+)"', rendered.html)
    assert hrefs == [tracking.tracked_url(31, 2), tracking.tracked_url(31, 3), "mailto:hola@tienda.example",
                     tracking.answer_url(31, "other"), tracking.unsubscribe_url(31)]
    assert 'src="https://cdn.example/i.png"' in rendered.html  # images are not clicks
    assert f'src="{base}/o/' in rendered.html  # the open pixel
    for index, target in enumerate(rendered.links):
        assert tracking.token_read(_token_of(tracking.tracked_url(31, index)), purpose=tracking.CLICK) == (31, str(index))
        assert target.startswith("https://")


def test_unsubscribe_headers_follow_rfc_8058(settings):
    rendered = delivery_render(delivery=delivery(pk=5), templates=default_templates("winback", "email_1"),
                               context=preview_context(journey_key="winback", language="es", now=NOW), language="es")
    assert rendered.headers == {"List-Unsubscribe": f"<{tracking.unsubscribe_url(5)}>",
                                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    settings.TERTULIA_UNSUBSCRIBE_MAILTO = "baja@tienda.example"
    rendered = delivery_render(delivery=delivery(pk=5), templates=default_templates("winback", "email_1"),
                               context=preview_context(journey_key="winback", language="es", now=NOW), language="es")
    assert rendered.headers["List-Unsubscribe"] == (
        f"<{tracking.unsubscribe_url(5)}>, <mailto:baja@tienda.example?subject=unsubscribe>")


def test_links_use_the_public_url_setting(settings):
    settings.TERTULIA_PUBLIC_URL = "https://news.tienda.example/"
    rendered = delivery_render(delivery=delivery(pk=9), templates=email(es_text="{{ recovery_url }} {{ unsubscribe_url }}"),
                               context=cart_context(), language="es")
    assert rendered.text.startswith("https://news.tienda.example/r/")
    assert "https://news.tienda.example/u/" in rendered.text


HOSTILE = '<script>alert("x")</script>'


def test_hostile_names_and_products_are_escaped_in_html():
    context = cart_context(first_name=HOSTILE, store_name="Tienda <b>", items=[
        {"name": f"Taza {HOSTILE}", "sku": "T", "quantity": 1, "price": "5", "url": 'https://t.example/"onmouseover="x',
         "image_url": 'javascript:alert(1)" onerror="x'}])
    rendered = delivery_render(delivery=delivery(), templates=default_templates("abandoned_cart", "email_1"),
                               context=context, language="es")
    assert "<script>" not in rendered.html and "<b>" not in rendered.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in rendered.html
    assert 'onerror="x' not in rendered.html and 'onmouseover="x' not in rendered.html
    # The stored target is the real URL (entities decoded once), so the redirect goes where the store said.
    assert 'https://t.example/"onmouseover="x' in rendered.links
    # Plain text is not HTML: the name stays as written, and nothing there is executable.
    assert f"Hola {HOSTILE}:" in rendered.text


_BASELINE = {}


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=40), product=st.text(max_size=40))
def test_no_name_or_product_title_adds_markup(name, product):
    """Whatever a shopper calls themselves or a store calls a product, the HTML has exactly our tags."""
    templates = default_templates("abandoned_cart", "email_1")

    def html_for(first_name, title):
        context = cart_context(first_name=first_name)
        context["items"] = [{**context["items"][0], "name": title}]
        return delivery_render(delivery=delivery(), templates=templates, context=context, language="es")

    if "baseline" not in _BASELINE:
        _BASELINE["baseline"] = html_for("Ana", "Taza").html.count("<")
    rendered = html_for(name, product)
    assert rendered.html.count("<") == _BASELINE["baseline"]
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


@pytest.mark.parametrize("url", ["javascript:alert(1)", " JavaScript:alert(1)", "java\tscript:alert(1)",
                                 "data:text/html,<b>x</b>", "vbscript:x"])
def test_links_from_the_context_cannot_run_script(url):
    rendered = delivery_render(delivery=delivery(), templates=default_templates("abandoned_cart", "email_1"),
                               context=cart_context(recovery_url=url), language="es")
    assert "script:" not in rendered.html.lower().replace("\t", "") and "data:text" not in rendered.html
    assert 'href="#"' in rendered.html


def test_a_subject_is_one_line_whatever_the_name_holds():
    rendered = delivery_render(delivery=delivery(), templates=default_templates("abandoned_cart", "email_1"),
                               context=cart_context(first_name="Ana\r\nBcc: todos@example.com"), language="es")
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert rendered.subject.startswith("Ana Bcc: todos@example.com, ")


def test_a_full_html_document_only_gets_the_pixel():
    html = "<!doctype html><html><body><p>Hola</p><p>{{ unsubscribe_url }}</p></body></html>"
    rendered = delivery_render(delivery=delivery(pk=3), templates=email(html=html), context=cart_context(), language="es")
    assert rendered.html.startswith("<!doctype html><html><body><p>Hola</p>")
    assert rendered.html.endswith('border:0;margin:0;padding:0"></body></html>')
    assert rendered.html.count("<html") == 1


def test_money_in_each_language():
    from django.utils import translation

    with translation.override("es"):
        assert rendering.money("1234.5", "EUR") == "1.234,50 €"
        assert rendering.money("9", "CHF") == "9,00 CHF"
        assert rendering.money("", "EUR") == ""
    with translation.override("en"):
        assert rendering.money("1234.5", "eur") == "€1,234.50"
        assert rendering.money("9", "CHF") == "9.00 CHF"
        assert rendering.money("n/a", "EUR") == "n/a"


def test_compiled_templates_are_reused():
    templates = default_templates("thank_you", "email_1")
    context = preview_context(journey_key="thank_you", language="es", now=NOW)
    delivery_render(delivery=delivery(journey_key="thank_you"), templates=templates, context=context, language="es")
    misses = rendering._compiled.cache_info().misses
    for pk in range(1, 50):
        delivery_render(delivery=delivery(pk=pk, journey_key="thank_you"), templates=templates, context=context,
                        language="es")
    assert rendering._compiled.cache_info().misses == misses


def test_welcome_confirmation_gets_a_confirm_link_when_the_engine_gives_none():
    rendered = delivery_render(delivery=delivery(pk=12, journey_key="welcome", step_key="confirm"),
                               templates=default_templates("welcome", "confirm"),
                               context={"first_name": "", "store_name": "Tienda", "store_url": "", "confirm_url": ""},
                               language="es")
    assert tracking.confirm_url(12) in rendered.text and tracking.confirm_url(12) in rendered.html
    assert rendered.links == []  # our own confirmation link is not wrapped


# --- Preview ------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_preview_uses_the_store_catalog_and_leaves_links_untracked(store):
    events_ingest(store=store, events=[make_event("product_upserted", {
        "sku": "JARRA-1", "title": "Jarra de barro <grande>", "price": "24.00", "currency": "EUR",
        "url": "https://tienda.example/p/jarra"})])
    preview = journey_preview(store=store, journey_key="abandoned_cart", step="email_1", language="es")
    assert preview.errors == [] and preview.channel == "email"
    assert "Jarra de barro &lt;grande&gt;" in preview.rendered.html
    assert 'href="https://tienda.example/p/jarra"' in preview.rendered.html
    assert "- Jarra de barro <grande>: 24,00 €" in preview.rendered.text
    assert "/r/" not in preview.rendered.html
    english = journey_preview(store=store, journey_key="abandoned_cart", step="sms_1", language="en",
                              sample_context={"first_name": "Sam"})
    assert english.channel == "sms" and english.rendered.text.endswith("Reply STOP to opt out.")


@pytest.mark.django_db
def test_preview_of_an_edited_step_reports_the_validation_errors(store):
    step = {"key": "email_1", "channel": "email", "templates": email(es_text="{{ nombre }}")}
    preview = journey_preview(store=store, journey_key="thank_you", step=step, language="es")
    assert preview.rendered is None
    assert preview.errors == templates_validate(journey_key="thank_you", channel="email", templates=step["templates"])
    assert ("templates.es.text", "unknown_variable") in codes(preview.errors)
    missing = journey_preview(store=store, journey_key="thank_you", step="email_9", language="es")
    assert codes(missing.errors) == [("step", "unknown_step")]
