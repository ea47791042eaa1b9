"""Journey messages: the variables each journey offers, the default texts, validation and rendering.

Templates use Django's template language on engines of their own: no loaders (so no include or
extends), a short list of allowed tags, autoescape on for HTML and off for plain text, SMS and
DMs. `templates_validate` refuses what would not render or would name a variable the journey does
not provide, and insists on a way out (the unsubscribe link in e-mail, opt-out wording elsewhere).
`delivery_render` turns a delivery's templates and context into what is sent: links rewritten to
the click redirect, the open pixel, the unsubscribe headers of RFC 8058. Compiled templates are
cached by their text, so rendering the same step for 100,000 people compiles it once.
"""

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from html import unescape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.template import Context, Engine, Library, TemplateSyntaxError
from django.template.base import FilterExpression, Node, NodeList, TextNode, Variable, VariableNode
from django.template.defaulttags import (
    CommentNode,
    FirstOfNode,
    ForNode,
    IfNode,
    NowNode,
    SpacelessNode,
    TemplateTagNode,
    VerbatimNode,
    WithNode,
)
from django.utils import timezone, translation
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

from tertulia.channels import tracking
from tertulia.core.errors import ErrorDetail

LANGUAGES = ("es", "en")
DEFAULT_LANGUAGE = "es"

COMMON_VARIABLES = frozenset({"first_name", "store_name", "store_url", "unsubscribe_url", "opt_out"})
_JOURNEY_VARIABLES = {
    "abandoned_cart": {"items", "cart_total", "currency", "recovery_url", "discount_code", "discount_percent",
                       "discount_expires_at", "answer_urls"},
    "thank_you": {"order_id", "items", "order_total", "currency"},
    "review_request": {"order_id", "items", "review_url"},
    "referral_request": {"referral_code", "referral_url", "reward_percent"},
    "welcome": {"confirm_url"},
    "winback": {"discount_code", "discount_percent", "discount_expires_at", "last_order_at"},
    "purchase_intent": {"products", "mention_text", "mention_url", "network"},
}
TEMPLATE_VARIABLES: dict[str, frozenset[str]] = {
    key: COMMON_VARIABLES | names for key, names in _JOURNEY_VARIABLES.items()
}
# Names Django's context always has (forloop is added inside {% for %}).
_ALWAYS = frozenset({"True", "False", "None"})

# The steps the default definitions have, with their channel (journeys.definitions builds on these).
DEFAULT_STEPS: dict[str, dict[str, str]] = {
    "abandoned_cart": {"email_1": "email", "sms_1": "sms"},
    "thank_you": {"email_1": "email"},
    "review_request": {"email_1": "email", "email_2": "email"},
    "referral_request": {"email_1": "email"},
    "welcome": {"confirm": "email", "email_1": "email"},
    "winback": {"email_1": "email"},
    "purchase_intent": {"email_1": "email"},
}

EMAIL_PARTS = ("subject", "text", "html")
SHORT_PARTS = ("text",)
PARTS = {"email": EMAIL_PARTS, "sms": SHORT_PARTS, "social_dm": SHORT_PARTS}
REQUIRED_PARTS = {"email": ("subject", "text"), "sms": ("text",), "social_dm": ("text",)}
MAX_TEMPLATE_CHARS = 100_000
SMS_MAX_CHARS = 1600  # Twilio refuses longer bodies
SUBJECT_MAX_CHARS = 300  # Delivery.subject

# What SMS and DMs say to let people out; the word is what the inbound handlers listen for.
OPT_OUT = {
    "sms": {"es": "Para darte de baja, responde BAJA.", "en": "Reply STOP to opt out."},
    "social_dm": {"es": "Si no quieres más mensajes, responde BAJA.", "en": "Reply STOP and we won't message you again."},
    "email": {"es": "Puedes darte de baja en cualquier momento.", "en": "You can unsubscribe at any time."},
}
_OPT_OUT_WORDS = re.compile(r"\b(BAJA|STOP)\b", re.IGNORECASE)

_ALLOWED_NODES = (TextNode, VariableNode, IfNode, ForNode, WithNode, FirstOfNode, CommentNode, SpacelessNode,
                  NowNode, TemplateTagNode, VerbatimNode)
_ALLOWED_TAGS = "if, for, with, firstof, comment, spaceless, now, templatetag, verbatim"
# `safe` would let a shopper's name or a product title put markup into the e-mail.
_FORBIDDEN_FILTERS = frozenset({"safe", "safeseq"})

_TEMPLATES_DIR = Path(__file__).resolve().parent / "templates" / "journeys" / "messages"

register = Library()


# --- Filters available in every message -----------------------------------------------------------

_CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "MXN": "$", "ARS": "$", "COP": "$", "CLP": "$"}


@register.filter
def money(value: Any, currency: str = "") -> str:
    """An amount as people read it in the message's language: "1.234,50 €" (es) or "€1,234.50" (en)."""
    if value in (None, ""):
        return ""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return str(value)
    code = str(currency or "").upper()
    symbol = _CURRENCY_SYMBOLS.get(code, code)
    number = f"{amount:,.2f}"
    if (translation.get_language() or DEFAULT_LANGUAGE).startswith("es"):
        number = number.replace(",", " ").replace(".", ",").replace(" ", ".")
        return f"{number} {symbol}".strip()
    if code in _CURRENCY_SYMBOLS:
        return f"{symbol}{number}"
    return f"{number} {symbol}".strip()


# --- Engines and the compiled-template cache --------------------------------------------------------

@cache
def _engine(html: bool) -> Engine:
    # debug=True only changes error reports (the line of a syntax error); rendering is the same.
    return Engine(loaders=[], autoescape=html, debug=True, libraries={}, builtins=["tertulia.journeys.rendering"])


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool):
    return _engine(html).from_string(source)


# --- Validation -------------------------------------------------------------------------------------

def _syntax_message(exc: TemplateSyntaxError) -> str:
    message = str(exc).replace(" Did you forget to register or load this tag?", "")
    line = getattr(exc, "template_debug", {}).get("line")
    if line and f"line {line}" not in message:
        return f"The template does not compile (line {line}): {message}"
    return f"The template does not compile: {message}"


@dataclass(slots=True)
class _Walk:
    allowed: frozenset[str]
    used: set[str] = field(default_factory=set)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (code, message)


def _lineno(node: Node) -> int | None:
    token = getattr(node, "token", None)
    return getattr(token, "lineno", None)


def _at(node: Node) -> str:
    line = _lineno(node)
    return f" (line {line})" if line else ""


def _check_variable(var: Any, scope: frozenset[str], walk: _Walk, node: Node) -> None:
    if not isinstance(var, Variable) or var.lookups is None:
        return  # a literal: "text", 3, _("...")
    name = var.lookups[0]
    walk.used.add(name)
    if name not in scope and name not in walk.allowed and name not in _ALWAYS:
        walk.problems.append((
            "unknown_variable",
            f"Unknown variable '{name}'{_at(node)}. This message can use: {', '.join(sorted(walk.allowed))}.",
        ))


def _check_expression(expression: Any, scope: frozenset[str], walk: _Walk, node: Node) -> None:
    if not isinstance(expression, FilterExpression):
        return
    _check_variable(expression.var, scope, walk, node)
    for func, args in expression.filters:
        name = getattr(func, "_filter_name", func.__name__)
        if name in _FORBIDDEN_FILTERS:
            walk.problems.append(("filter_not_allowed",
                                  f"The filter '{name}'{_at(node)} is not allowed: every value is escaped."))
        for is_variable, arg in args:
            if is_variable:
                _check_variable(arg, scope, walk, node)


def _check_condition(condition: Any, scope: frozenset[str], walk: _Walk, node: Node) -> None:
    # {% if %} conditions are a small tree: operators with first/second, literals holding an expression.
    if condition is None:
        return
    value = getattr(condition, "value", None)
    if isinstance(value, FilterExpression):
        _check_expression(value, scope, walk, node)
    _check_condition(getattr(condition, "first", None), scope, walk, node)
    _check_condition(getattr(condition, "second", None), scope, walk, node)


def _walk_nodes(nodelist: Iterable[Node], scope: frozenset[str], walk: _Walk) -> None:
    for node in nodelist:
        if not isinstance(node, _ALLOWED_NODES):
            contents = getattr(getattr(node, "token", None), "contents", "") or type(node).__name__
            tag = contents.split()[0] if contents.split() else contents
            walk.problems.append(("tag_not_allowed",
                                  f"The tag '{tag}'{_at(node)} is not allowed in messages. Allowed: {_ALLOWED_TAGS}."))
            continue
        if isinstance(node, VariableNode):
            _check_expression(node.filter_expression, scope, walk, node)
        elif isinstance(node, ForNode):
            _check_expression(node.sequence, scope, walk, node)
            _walk_nodes(node.nodelist_loop, scope | frozenset(node.loopvars) | {"forloop"}, walk)
            _walk_nodes(node.nodelist_empty or NodeList(), scope, walk)
        elif isinstance(node, IfNode):
            for condition, branch in node.conditions_nodelists:
                _check_condition(condition, scope, walk, node)
                _walk_nodes(branch, scope, walk)
        elif isinstance(node, WithNode):
            for expression in node.extra_context.values():
                _check_expression(expression, scope, walk, node)
            _walk_nodes(node.nodelist, scope | frozenset(node.extra_context), walk)
        elif isinstance(node, FirstOfNode):
            for expression in node.vars:
                _check_expression(expression, scope, walk, node)
            if node.asvar:
                walk.problems.append(("tag_not_allowed", f"'firstof ... as'{_at(node)} is not allowed in messages."))
        elif isinstance(node, NowNode) and node.asvar:
            walk.problems.append(("tag_not_allowed", f"'now ... as'{_at(node)} is not allowed in messages."))
        elif isinstance(node, SpacelessNode):
            _walk_nodes(node.nodelist, scope, walk)


def _template_check(source: str, *, html: bool, allowed: frozenset[str]) -> tuple[_Walk | None, list[tuple[str, str]]]:
    """Compile and inspect one template: (the walk with the names it uses, problems)."""
    try:
        template = _compiled(source, html)
    except TemplateSyntaxError as exc:
        return None, [("template_syntax", _syntax_message(exc))]
    walk = _Walk(allowed=allowed)
    _walk_nodes(template.nodelist, frozenset(), walk)
    return walk, walk.problems


def _path(field_path: str, *parts: str) -> str:
    return ".".join(p for p in (field_path, *parts) if p)


def templates_validate(*, journey_key: str, channel: str, templates: Any, field: str = "templates") -> list[ErrorDetail]:
    """Every problem with a step's templates, each naming its place (`steps[1].templates.es.text`).

    Checks: one entry per language (es and en) with the parts the channel needs, that each part
    compiles, names only the journey's variables and allowed tags, renders with sample data, and
    that the way out is there: `unsubscribe_url` in e-mail (text and HTML), the opt-out wording
    (`opt_out`, or the word BAJA/STOP) in SMS and DMs.
    """
    if journey_key not in TEMPLATE_VARIABLES:
        return [ErrorDetail(field=field, code="unknown_journey", message=f"Unknown journey '{journey_key}'.")]
    if channel not in PARTS:
        return [ErrorDetail(field=field, code="unknown_channel",
                            message=f"Unknown channel '{channel}'. Use one of: {', '.join(PARTS)}.")]
    if not isinstance(templates, dict):
        return [ErrorDetail(field=field, code="invalid_type",
                            message="Must be an object with one entry per language: es and en.")]
    errors: list[ErrorDetail] = []
    allowed = TEMPLATE_VARIABLES[journey_key]
    for language in LANGUAGES:
        if language not in templates:
            errors.append(ErrorDetail(field=_path(field, language), code="missing_language",
                                      message=f"Templates in '{language}' are required (es and en)."))
    for language, parts in templates.items():
        here = _path(field, str(language))
        if language not in LANGUAGES:
            errors.append(ErrorDetail(field=here, code="unknown_language",
                                      message=f"Unknown language '{language}'. Use es or en."))
            continue
        if not isinstance(parts, dict):
            errors.append(ErrorDetail(field=here, code="invalid_type",
                                      message=f"Must be an object with {', '.join(PARTS[channel])}."))
            continue
        errors.extend(_language_validate(journey_key=journey_key, channel=channel, language=language,
                                         parts=parts, allowed=allowed, here=here))
    return errors


def _language_validate(*, journey_key: str, channel: str, language: str, parts: dict, allowed: frozenset[str],
                       here: str) -> list[ErrorDetail]:
    errors: list[ErrorDetail] = []
    for part in parts:
        if part not in PARTS[channel]:
            errors.append(ErrorDetail(field=_path(here, str(part)), code="unknown_part",
                                      message=f"A {channel} message has no '{part}'; it has {', '.join(PARTS[channel])}."))
    for part in REQUIRED_PARTS[channel]:
        value = parts.get(part)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors.append(ErrorDetail(field=_path(here, part), code="required", message="Must not be empty."))
    walks: dict[str, _Walk] = {}
    for part in PARTS[channel]:
        source = parts.get(part)
        if source is None or (isinstance(source, str) and not source.strip()):
            continue
        where = _path(here, part)
        if not isinstance(source, str):
            errors.append(ErrorDetail(field=where, code="invalid_type", message="Must be a string."))
            continue
        if len(source) > MAX_TEMPLATE_CHARS:
            errors.append(ErrorDetail(field=where, code="too_long",
                                      message=f"At most {MAX_TEMPLATE_CHARS:,} characters."))
            continue
        if "\x00" in source:
            errors.append(ErrorDetail(field=where, code="nul_character",
                                      message="Text must not contain the NUL character (U+0000)."))
            continue
        walk, problems = _template_check(source, html=part == "html", allowed=allowed)
        errors.extend(ErrorDetail(field=where, code=code, message=message) for code, message in problems)
        if walk is not None and not problems:
            walks[part] = walk

    # The way out, checked on the parts that compiled (a broken part already has its error).
    if channel == "email":
        for part in ("text", "html"):
            if part in walks and "unsubscribe_url" not in walks[part].used:
                errors.append(ErrorDetail(
                    field=_path(here, part), code="missing_unsubscribe",
                    message="E-mail must include the unsubscribe link: add {{ unsubscribe_url }}."))
    elif "text" in walks and "opt_out" not in walks["text"].used and not _OPT_OUT_WORDS.search(parts["text"]):
        errors.append(ErrorDetail(
            field=_path(here, "text"), code="missing_opt_out",
            message="SMS and direct messages must say how to opt out: add {{ opt_out }} (or the word BAJA/STOP)."))

    if not errors and walks:
        errors.extend(_sample_render_check(journey_key=journey_key, channel=channel, language=language,
                                           parts=parts, here=here))
    return errors


def _sample_render_check(*, journey_key: str, channel: str, language: str, parts: dict, here: str) -> list[ErrorDetail]:
    """Render with sample data: what compiles may still fail (a filter on the wrong type) or be too long."""
    context = preview_context(journey_key=journey_key, language=language)
    delivery = _PreviewDelivery(journey_key=journey_key, step_key="", channel=channel)
    errors = []
    for part in PARTS[channel]:
        if not parts.get(part):
            continue
        try:
            rendered = delivery_render(delivery=delivery, templates={language: {part: parts[part]}}, context=context,
                                       language=language, track=False)
        except Exception as exc:  # whatever the template does wrong, the editor hears it
            errors.append(ErrorDetail(field=_path(here, part), code="render_failed",
                                      message=f"The template does not render: {exc}"))
            continue
        if channel == "sms" and len(rendered.text) > SMS_MAX_CHARS:
            errors.append(ErrorDetail(field=_path(here, part), code="too_long",
                                      message=f"With sample data the SMS has {len(rendered.text)} characters; "
                                              f"at most {SMS_MAX_CHARS} can be sent."))
    return errors


# --- Default templates --------------------------------------------------------------------------------

_PART_FILES = {"subject": "subject.txt", "text": "text.txt", "html": "body.html"}


@cache
def _default_file(journey_key: str, step_key: str, language: str, name: str) -> str | None:
    path = _TEMPLATES_DIR / journey_key / step_key / language / name
    return path.read_text(encoding="utf-8").strip("\n") + ("\n" if name == "body.html" else "") if path.is_file() else None


def default_templates(journey_key: str, step_key: str, channel: str | None = None) -> dict[str, dict[str, str]]:
    """The shipped Spanish and English texts of a step: {"es": {...}, "en": {...}}.

    `channel` (default: the step's own) picks the shape: subject/text/html for e-mail, a short
    text for SMS and DMs, so a variant that moves a step to another channel has words ready.
    Raises KeyError for a step that has no defaults.
    """
    step_channel = DEFAULT_STEPS[journey_key][step_key]
    channel = channel or step_channel
    result: dict[str, dict[str, str]] = {}
    for language in LANGUAGES:
        if channel == "email":
            parts = {part: _default_file(journey_key, step_key, language, name) for part, name in _PART_FILES.items()}
            result[language] = {part: text for part, text in parts.items() if text is not None}
        else:
            short = _default_file(journey_key, step_key, language, "short.txt")
            if short is None:
                raise KeyError(f"{journey_key}.{step_key} has no short text for {channel}")
            result[language] = {"text": short}
        if channel == "email" and not {"subject", "text"} <= result[language].keys():
            raise KeyError(f"{journey_key}.{step_key} has no e-mail text in {language}")
    return result


# --- Rendering ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    links: list[str]  # targets in order: /r/<token> of index i redirects to links[i]
    headers: dict[str, str]
    language: str = DEFAULT_LANGUAGE


def language_pick(*candidates: str | None, available: Iterable[str] = LANGUAGES) -> str:
    """The first candidate we have texts for ("es-ES" counts as "es"), else Spanish, else any."""
    available = tuple(available)
    for candidate in candidates:
        code = (candidate or "").split("-")[0].split("_")[0].strip().lower()
        if code in available:
            return code
    if DEFAULT_LANGUAGE in available or not available:
        return DEFAULT_LANGUAGE
    return available[0]


_TEXT_LINK = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_TRAILING = ".,;:!?'\")]}»"
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel", "sms"})
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


@lru_cache(maxsize=8)
def _keyed_mac(secret: str) -> "hmac.HMAC":
    # tracking's HMAC, keyed once: a copy per token instead of keying a new HMAC a dozen times a message.
    return hmac.new(tracking._key(secret), digestmod=hashlib.sha256)


class _Signed:
    """The signed addresses of one delivery, byte for byte what tracking.unsubscribe_url() & co. make.

    Same key, body and signature as `tracking._token`, so `tracking.token_read` reads them (and
    every token made before stays valid); only cheaper to make, which counts at a dozen per message.
    """

    __slots__ = ("base", "body", "mac")

    def __init__(self, delivery_id: int) -> None:
        self.mac = _keyed_mac(settings.SECRET_KEY)
        self.base = settings.TERTULIA_PUBLIC_URL.rstrip("/")
        self.body = tracking._base36(delivery_id)

    def token(self, purpose: str, argument: str = "") -> str:
        body = f"{self.body}.{argument}" if argument else self.body
        mac = self.mac.copy()
        mac.update(f"{purpose}|{body}".encode())
        return f"{body}.{base64.urlsafe_b64encode(mac.digest()[:tracking._SIGNATURE_BYTES]).decode()}"

    def url(self, purpose: str, argument: str = "") -> str:
        return self.base + tracking.PATHS[purpose] + self.token(purpose, argument)


class _Links:
    """Collects the targets of one message (each URL once) and answers the tracked address for each."""

    def __init__(self, delivery_id: int, track: bool, signed: _Signed | None = None) -> None:
        self.delivery_id = delivery_id
        self.track = track
        self.signed = signed
        self.targets: list[str] = []
        self.index: dict[str, int] = {}

    def wrap(self, url: str) -> str:
        if not self.track or tracking.is_tracking_url(url):
            return url
        position = self.index.get(url)
        if position is None:
            position = self.index[url] = len(self.targets)
            self.targets.append(url)
        if self.signed is None:
            return tracking.tracked_url(self.delivery_id, position)
        return self.signed.url(tracking.CLICK, tracking._base36(position))

    def in_text(self, text: str) -> str:
        def replace(match: re.Match) -> str:
            url = match.group(0)
            tail = ""
            # Sentence punctuation after a link is not part of it ("...aquí: https://x.es/a.").
            while url and url[-1] in _TRAILING and not (url[-1] == ")" and url.count("(") >= url.count(")")):
                tail = url[-1] + tail
                url = url[:-1]
            return self.wrap(url) + tail
        return _TEXT_LINK.sub(replace, text)

    def in_html(self, html: str) -> str:
        def replace(match: re.Match) -> str:
            raw = match.group(2) if match.group(2) is not None else match.group(3)
            url = unescape(raw).strip()
            scheme = _SCHEME.match("".join(url.split()))  # browsers ignore whitespace inside "java script:"
            if scheme and scheme.group(1).lower() not in _SAFE_SCHEMES:
                return f'{match.group(1)}"#"'  # javascript:, data:... from a value in the context
            if not url.lower().startswith(("http://", "https://")):
                return match.group(0)
            return f'{match.group(1)}"{self.wrap(url)}"'
        # The case-insensitive pattern tried at every character costs as much as rendering the HTML:
        # try it only where "href" stands (lower() keeps positions when it keeps the length).
        lowered = html.lower()
        if "href" not in lowered:
            return html
        if len(lowered) != len(html):
            return _HREF.sub(replace, html)
        out: list[str] = []
        done = 0
        position = lowered.find("href")
        while position >= 0:
            if position >= done:
                match = _HREF.match(html, position)
                if match is not None:
                    out.append(html[done:position])
                    out.append(replace(match))
                    done = match.end()
            position = lowered.find("href", position + 1)
        out.append(html[done:])
        return "".join(out)


def _tidy_text(text: str) -> str:
    # Template tags on their own lines leave blank runs and trailing spaces behind (each pattern only
    # run when the text has something for it: the same result, cheaper).
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACE.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip()


def _tidy_subject(subject: str) -> str:
    # One line, whatever a first name or a template holds: a newline in a header would be an injection.
    return " ".join(subject.split())[:SUBJECT_MAX_CHARS]


def _moment(value: Any) -> Any:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, ZoneInfo("UTC"))
    return value


def _person_zone(context: Mapping[str, Any], delivery: Any) -> ZoneInfo | None:
    names = [context.get("timezone")]
    if _store_cached(delivery):
        names.append(delivery.store.timezone)
    for name in names:
        if name:
            try:
                return ZoneInfo(str(name))
            except (KeyError, ValueError):
                continue
    return None


def _store_cached(delivery: Any) -> bool:
    state = getattr(delivery, "_state", None)
    return state is not None and "store" in state.fields_cache


@lru_cache(maxsize=1)
def _layout_source() -> str:
    return (_TEMPLATES_DIR / "_layout.html").read_text(encoding="utf-8")


def _html_document(fragment: str, *, subject: str, language: str, pixel_url: str, store_name: str = "") -> str:
    """Wrap an HTML body in the shared layout; a full document brought by the store only gets the pixel."""
    pixel = (f'<img src="{pixel_url}" width="1" height="1" alt="" '
             'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">') if pixel_url else ""
    head = fragment.lstrip()[:15].lower()
    if head.startswith(("<!doctype", "<html")):
        closing = fragment.lower().rfind("</body>")
        return fragment[:closing] + pixel + fragment[closing:] if closing >= 0 else fragment + pixel
    pieces = _layout_pieces(_layout_source(), language, store_name)
    if pieces is None:
        context = Context({"content": mark_safe(fragment), "subject": subject, "language": language,  # noqa: S308 - rendered with autoescape
                           "store_name": store_name,
                           "pixel": mark_safe(pixel)}, autoescape=True)  # noqa: S308 - our own markup, URL is ours
        return _compiled(_layout_source(), True).render(context)
    values = {_SUBJECT_MARK: conditional_escape(subject), _CONTENT_MARK: fragment, _PIXEL_MARK: pixel}
    return "".join(values.get(piece, piece) for piece in pieces)


# The layout differs between messages only in subject, content and pixel: it is rendered once per
# language and store name with these marks in their place, and each message fills them in (the
# subject escaped as autoescape would). NUL never comes out of the layout's own text.
_SUBJECT_MARK, _CONTENT_MARK, _PIXEL_MARK = "\x00subject\x00", "\x00content\x00", "\x00pixel\x00"
_MARKS = re.compile("(\x00(?:subject|content|pixel)\x00)")


@lru_cache(maxsize=256)
def _layout_pieces(source: str, language: str, store_name: str) -> tuple[str, ...] | None:
    context = Context({"content": mark_safe(_CONTENT_MARK), "subject": mark_safe(_SUBJECT_MARK),  # noqa: S308 - marks
                       "language": language, "store_name": store_name, "pixel": mark_safe(_PIXEL_MARK)},  # noqa: S308
                      autoescape=True)
    rendered = _compiled(source, True).render(context)
    if "\x00" in source or "\x00" in language or "\x00" in store_name or rendered.count("\x00") != 6:
        return None  # not the plain layout this relies on: render it whole every time
    return tuple(_MARKS.split(rendered))


def delivery_render(*, delivery: Any, templates: Mapping[str, Mapping[str, str]], context: Mapping[str, Any],
                    language: str | None, track: bool = True) -> Rendered:
    """What a delivery sends: subject, text, HTML, the link targets, and the e-mail headers.

    `language` is the person's (customer.language, may be empty); the store's language and then
    Spanish are the fallbacks. The context comes from the engine (docs/journeys-messages.md);
    `unsubscribe_url`, `opt_out` and, for abandoned carts, `answer_urls` are added here. With
    track=False (previews) links are left as they are.
    """
    store_language = delivery.store.language if _store_cached(delivery) else None
    lang = language_pick(language, store_language, available=[key for key in templates if key in LANGUAGES])
    parts = templates.get(lang) or {}
    channel = delivery.channel
    delivery_id = delivery.pk or 0

    values = {key: _moment(value) if key.endswith("_at") else value for key, value in context.items()}
    signed = _Signed(delivery_id)
    values["unsubscribe_url"] = signed.url(tracking.UNSUBSCRIBE)
    values["opt_out"] = OPT_OUT.get(channel, OPT_OUT["sms"])[lang]
    if delivery.journey_key == "abandoned_cart":
        values["answer_urls"] = {choice: signed.url(tracking.ANSWER, choice) for choice in tracking.ANSWER_CHOICES}
    if delivery.journey_key == "welcome" and not values.get("confirm_url"):
        values["confirm_url"] = signed.url(tracking.CONFIRM)

    links = _Links(delivery_id, track, signed)
    zone = _person_zone(values, delivery)
    with translation.override(lang), timezone.override(zone) if zone else nullcontext():
        subject = ""
        if parts.get("subject"):
            subject = _tidy_subject(_compiled(parts["subject"], False).render(Context(values, autoescape=False)))
        text = links.in_text(_tidy_text(_compiled(parts.get("text") or "", False).render(Context(values, autoescape=False))))
        html = ""
        if channel == "email" and parts.get("html"):
            fragment = links.in_html(_compiled(parts["html"], True).render(Context(values, autoescape=True)))
            pixel = f"{signed.base}{tracking.PATHS[tracking.OPEN]}{signed.token(tracking.OPEN)}.gif" if track else ""
            html = _html_document(fragment, subject=subject, language=lang, pixel_url=pixel,
                                  store_name=str(values.get("store_name") or ""))

    headers: dict[str, str] = {}
    if channel == "email":
        targets = [f"<{values['unsubscribe_url']}>"]
        mailto = getattr(settings, "TERTULIA_UNSUBSCRIBE_MAILTO", "")
        if mailto:
            targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
        headers["List-Unsubscribe"] = ", ".join(targets)
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return Rendered(subject=subject, text=text, html=html, links=links.targets, headers=headers, language=lang)


# --- Sample data and the preview -----------------------------------------------------------------------

@dataclass(slots=True)
class _PreviewDelivery:
    """Stands in for a Delivery when nothing is being sent (validation, previews)."""

    journey_key: str
    step_key: str
    channel: str
    pk: int = 0
    variant: str = ""


_SAMPLE_ITEMS = {
    "es": [("Taza de gres esmaltada", "TAZA-GRES", 2, "14.90"), ("Café de Huila en grano, 250 g", "CAFE-HUILA", 1, "9.50")],
    "en": [("Glazed stoneware mug", "TAZA-GRES", 2, "14.90"), ("Huila whole-bean coffee, 250 g", "CAFE-HUILA", 1, "9.50")],
}


_SAMPLE_MENTION = {"es": "¿Dónde puedo comprar {product}? Lo quiero ya", "en": "Where can I buy {product}? I want it now"}


def preview_context(*, journey_key: str, language: str, store: Any = None, products: list | None = None,
                   now: datetime | None = None) -> dict[str, Any]:
    """Realistic values for every variable of a journey, for validation and previews."""
    moment = now or timezone.now()
    store_url = (getattr(store, "website_url", "") or "https://tienda.example").rstrip("/")
    currency = getattr(store, "currency", "") or "EUR"
    if products:
        rows = [(p.title, p.sku, 1, str(p.price or "0"), p.url or f"{store_url}/p/{p.sku}", p.image_url or "")
                for p in products[:3]]
    else:
        rows = [(name, sku, qty, price, f"{store_url}/p/{sku.lower()}", "") for name, sku, qty, price in _SAMPLE_ITEMS[
            "en" if language == "en" else "es"]]
    items = [{"name": name, "sku": sku, "quantity": qty, "price": price, "url": url, "image_url": image,
              "review_url": f"{store_url}/reviews/sample-{sku.lower()}"} for name, sku, qty, price, url, image in rows]
    products = [{"title": name, "url": url, "price": price, "currency": currency, "image_url": image}
                for name, _sku, _qty, price, url, image in rows]
    total = sum((Decimal(price) * qty for _, _, qty, price, _, _ in rows), Decimal("0"))
    return {
        "first_name": "Emma" if language == "en" else "Lucía",
        "store_name": getattr(store, "name", "") or "La Alacena",
        "store_url": store_url,
        "items": items,
        "cart_total": str(total),
        "order_total": str(total),
        "currency": currency,
        "recovery_url": f"{store_url}/cart/recover/sample",
        "discount_code": "VUELVE-7K2Q",
        "discount_percent": 10,
        "discount_expires_at": moment + timedelta(hours=48),
        "order_id": "1042",
        "review_url": f"{store_url}/reviews/sample",
        "referral_code": "LUCIA-5J8",
        "referral_url": f"{store_url}/?ref=LUCIA-5J8",
        "reward_percent": 15,
        "confirm_url": "",
        "last_order_at": moment - timedelta(days=120),
        "products": products,
        "mention_text": _SAMPLE_MENTION["en" if language == "en" else "es"].format(product=rows[0][0]),
        "mention_url": "https://mastodon.social/@lucia/112233445566778899",
        "network": "Mastodon",
    }


@dataclass(slots=True)
class Preview:
    channel: str
    language: str
    rendered: Rendered | None
    errors: list[ErrorDetail]


def journey_preview(*, store: Any, journey_key: str, step: str | Mapping[str, Any], language: str,
                    sample_context: Mapping[str, Any] | None = None) -> Preview:
    """A step's message as one person would get it, with sample data, or the same errors validation gives.

    `step` is a step key (the store's saved journey, else the defaults) or a step object being
    edited ({"key", "channel", "templates"}). Links are left untracked so staff can follow them.
    """
    from tertulia.catalog.models import Product
    from tertulia.journeys.models import Journey

    field_path = "templates"
    if isinstance(step, str):
        step_key, channel, templates = step, DEFAULT_STEPS.get(journey_key, {}).get(step, "email"), None
        journey = Journey.objects.for_store(store).filter(key=journey_key).first()
        for position, saved in enumerate((journey.definition or {}).get("steps", []) if journey else []):
            if isinstance(saved, dict) and saved.get("key") == step_key:
                channel = saved.get("channel") or channel
                templates = saved.get("templates")
                field_path = f"steps[{position}].templates"
                break
        if templates is None:
            try:
                templates = default_templates(journey_key, step_key, channel)
            except KeyError:
                return Preview(channel, language, None, [ErrorDetail(
                    field="step", code="unknown_step", message=f"The journey has no step '{step_key}'.")])
    else:
        step_key = str(step.get("key") or "")
        channel = str(step.get("channel") or DEFAULT_STEPS.get(journey_key, {}).get(step_key, "email"))
        templates = step.get("templates")
    lang = language_pick(language)
    errors = templates_validate(journey_key=journey_key, channel=channel, templates=templates, field=field_path)
    if errors:
        return Preview(channel, lang, None, errors)
    products = list(Product.objects.for_store(store).filter(active=True, price__isnull=False).order_by("id")[:2])
    context = preview_context(journey_key=journey_key, language=lang, store=store, products=products)
    context.update(sample_context or {})
    delivery = _PreviewDelivery(journey_key=journey_key, step_key=step_key, channel=channel)
    rendered = delivery_render(delivery=delivery, templates=templates, context=context, language=lang, track=False)
    return Preview(channel, lang, rendered, [])
