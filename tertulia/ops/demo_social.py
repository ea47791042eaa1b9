"""The demo's social side: what the demo store listens for, its support team, and local stand-ins of the
networks that a replayed stream of posts runs through, so listening and the inbox fill while one watches.

`demo_social_seed` (every run, idempotent) gives the store its tracked terms (brand, hashtag, product
aliases, a competitor, an exclude rule), canned replies, inbox settings and a two-person team.
`demo_social_start` starts the sandboxes (Mastodon, Bluesky with its Jetstream, X, a blog feed and an
IMAP mailbox: listening.sandbox), points the store's sources at them, and starts the replay. The
connectors the worker runs hear the posts over the platforms' real wire formats; replies the team sends
from the inbox go back to the sandboxes, and the console page lists them.
"""

import html
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from http.server import BaseHTTPRequestHandler
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from tertulia.catalog.models import Product
from tertulia.core.models import Role, Store
from tertulia.core.services import membership_grant
from tertulia.customers.models import Identity
from tertulia.inbox.models import InboxSettings, Team
from tertulia.inbox.services import canned_reply_set, team_set
from tertulia.listening.connectors import html_to_text
from tertulia.listening.sandbox import SandboxHTTPServer
from tertulia.listening.sandbox.replay import (
    ALIASES,
    BRAND_TERMS,
    COMPETITOR_TERMS,
    EXCLUDED_TERMS,
    DemoReplay,
    ReplayPost,
    replay_posts,
)
from tertulia.listening.services import tracked_term_add, tracked_terms_sync_catalogue
from tertulia.listening.sources import source_cursor_reset, source_set

log = logging.getLogger("tertulia.demo")

TEAM_NAME = "Atención al cliente"
SECOND_AGENT = "marta"
SUPPORT_ADDRESS = "hola@ultramarinos-la-tertulia.example"
MAILBOX_PASSWORD = "demo-mailbox"  # noqa: S105 - the local sandbox mailbox's, nothing else

CANNED = [
    ("envios", "Plazos de envío",
     "Hola {{ customer_name }}, enviamos en 24-48 h laborables a la Península y en 3-5 días a Baleares y "
     "Canarias. Si nos das tu número de pedido lo miramos ahora mismo. {{ agent_name }}, {{ store_name }}",
     "Hi {{ customer_name }}, we ship within 24-48 working hours to mainland Spain and 3-5 days to the islands "
     "and the rest of Europe. Send us your order number and we'll check it now. {{ agent_name }}, {{ store_name }}"),
    ("pedido-retrasado", "Pedido retrasado",
     "Lo sentimos mucho, {{ customer_name }}. Nos escribes por privado con el número de pedido y te damos una "
     "solución hoy mismo.",
     "We're very sorry, {{ customer_name }}. Please send us your order number in a private message and we'll "
     "sort it out today."),
    ("gracias", "Gracias",
     "¡Muchas gracias, {{ customer_name }}! Nos alegra que te haya gustado. Un abrazo del equipo de "
     "{{ store_name }}.",
     "Thank you so much, {{ customer_name }}! We're glad you enjoyed it. Warm wishes from {{ store_name }}."),
    ("donde-comprar", "Dónde comprar",
     "Hola {{ customer_name }}, lo tienes en {{ store_url }} con envío en 24-48 h. ¿Te ayudamos a elegir?",
     "Hi {{ customer_name }}, you'll find it at {{ store_url }}, shipped within 48 hours. Can we help you choose?"),
]


def demo_social_seed(*, store: Store, user=None) -> None:
    """What the demo store listens for, how its inbox works and who answers; safe to run on every start."""
    with transaction.atomic():
        for term in BRAND_TERMS:
            kind = "hashtag" if term.startswith("#") else "brand"
            tracked_term_add(store=store, term=term, kind=kind)
        for term in COMPETITOR_TERMS:
            tracked_term_add(store=store, term=term, kind="competitor")
        for term in EXCLUDED_TERMS:
            tracked_term_add(store=store, term=term, exclude=True)
        products = {p.sku: p for p in Product.objects.for_store(store).filter(sku__in=list(ALIASES))}
        for sku, names in ALIASES.items():
            if sku in products:
                for name in names:
                    tracked_term_add(store=store, term=name, product=products[sku])
        tracked_terms_sync_catalogue(store=store)
        for shortcut, title, body_es, body_en in CANNED:
            canned_reply_set(store=store, shortcut=shortcut, title=title, body_es=body_es, body_en=body_en)
        settings, _created = InboxSettings.objects.for_store(store).get_or_create(store=store)
        if user is not None:
            if not user.email:  # alerts and mentions in notes reach the demo's outbox
                user.email = "demo@ultramarinos-la-tertulia.example"
                user.save(update_fields=["email"])
            members = [user.pk, _second_agent(store).pk]
            team = Team.objects.for_store(store).filter(name=TEAM_NAME).first()
            team = team_set(store=store, name=TEAM_NAME, member_ids=members, max_open_per_agent=25,
                            team_id=team.pk if team else None)
            if settings.default_team_id is None:
                InboxSettings.objects.filter(pk=settings.pk).update(default_team=team)


def _second_agent(store: Store):
    """A colleague for the demo user, so round-robin and "also viewing" have someone (no password: not for logging in)."""
    users = get_user_model()
    agent, created = users.objects.get_or_create(username=SECOND_AGENT, defaults={
        "first_name": "Marta", "email": "marta@ultramarinos-la-tertulia.example"})
    if created:
        agent.set_unusable_password()
        agent.save()
    membership_grant(store=store, user=agent, role=Role.AGENT)
    return agent


@dataclass
class DemoSocial:
    servers: dict[str, Any]
    console: "SandboxConsole"
    replay: DemoReplay
    mail: Any = None
    posted_by_replay: list[ReplayPost] = field(default_factory=list)

    @property
    def console_url(self) -> str:
        return self.console.base_url + "/"

    def stop(self) -> None:
        self.replay.close()
        for server in [*self.servers.values(), self.console, self.mail]:
            if server is None:
                continue
            try:
                server.stop()
            except Exception:  # noqa: BLE001 - stopping the demo must go on whatever a sandbox does
                log.warning("a demo sandbox did not stop cleanly", exc_info=True)


def _customer_handles(store: Store) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    rows = (Identity.objects.for_store(store).filter(kind__in=["mastodon", "bluesky", "x"])
            .select_related("customer").order_by("id"))
    for identity in rows:
        name = identity.customer.first_name or identity.value
        found.setdefault(identity.kind, []).append((identity.value, name))
    return found


def demo_social_start(*, store: Store, host: str = "127.0.0.1", interval: float = 20.0) -> DemoSocial:
    """Start the sandboxes, point the store's sources at them and start the replayed stream."""
    from tertulia.listening.sandbox.bluesky import DEFAULT_APP_PASSWORD, BlueskySandbox
    from tertulia.listening.sandbox.feeds import FeedSandbox
    from tertulia.listening.sandbox.mail import MailSandbox
    from tertulia.listening.sandbox.mastodon import MastodonSandbox
    from tertulia.listening.sandbox.x import CREDENTIALS, XSandbox

    mastodon = MastodonSandbox(host=host, username="latertulia", display_name="Ultramarinos La Tertulia",
                               token=secrets.token_urlsafe(16)).start()
    bluesky = BlueskySandbox(host=host, display_name="Ultramarinos La Tertulia").start()
    x = XSandbox(host=host, me_username="latertulia", me_name="Ultramarinos La Tertulia").start()
    feeds = FeedSandbox(host=host).start()
    mail = MailSandbox(host=host, accounts={SUPPORT_ADDRESS: MAILBOX_PASSWORD}).start()
    servers = {"mastodon": mastodon, "bluesky": bluesky, "x": x, "rss": feeds}

    sources = [
        ("mastodon", "mastodon", "Mastodon @latertulia",
         {"api_base_url": mastodon.base_url, "hashtags": ["latertulia"], "public": True, "notifications": True,
          "poll_seconds": 10, "reply_visibility": "public"}, {"access_token": mastodon.token}),
        ("bluesky", "bluesky", "Bluesky @latertulia.bsky.social",
         {"service_url": bluesky.base_url, "jetstream_url": bluesky.jetstream_url, "handle": bluesky.handle,
          "firehose": True, "mentions": True, "poll_seconds": 10}, {"app_password": DEFAULT_APP_PASSWORD}),
        ("x", "x", "X @latertulia",
         {"api_base_url": x.base_url, "stream_rules": ['"La Tertulia"', "#latertulia", "latertulia"],
          "mentions": True, "user_id": x.me["id"], "poll_seconds": 15}, dict(CREDENTIALS)),
        ("rss", "blog-cocina", "Blog «Cocina de mercado»",
         {"url": feeds.add_feed("/cocina/feed.xml", title="Cocina de mercado", language="es"), "poll_seconds": 60},
         {}),
        ("email", "soporte", "Correo de soporte",
         {"mode": "imap", "host": mail.host, "port": mail.port, "ssl": False, "username": SUPPORT_ADDRESS,
          "address": SUPPORT_ADDRESS, "poll_seconds": 15, "backfill": 50}, {"password": MAILBOX_PASSWORD}),
    ]
    for network, key, name, settings, secret_values in sources:
        source_set(store=store, network=network, key=key, name=name, settings=settings, secrets=secret_values)
        # Each run has fresh sandboxes: what the old ones said is stored already; start from their present.
        source_cursor_reset(store=store, key=key)
    _blog_entries(feeds)
    _support_mail(mail)

    customers = _customer_handles(store)
    for handle, name in customers.get("mastodon", []):
        mastodon.add_account(handle, display_name=name, followers_count=120)
    publishers = {
        "mastodon": lambda post: _mastodon_publish(mastodon, post),
        "bluesky": lambda post: _bluesky_publish(bluesky, post),
        "x": lambda post: _x_publish(x, post),
    }
    posts = replay_posts(customers=customers, store_handles={
        "mastodon": "@latertulia", "bluesky": f"@{bluesky.handle}", "x": "@latertulia"})
    replay = DemoReplay(publishers=publishers, posts=posts, interval=interval)
    console = SandboxConsole(host=host, servers=servers, replay=replay).start()
    replay.start()
    return DemoSocial(servers=servers, console=console, replay=replay, mail=mail)


def _written(post: ReplayPost) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=post.age_seconds)


def _mastodon_publish(sandbox, post: ReplayPost) -> None:
    account = sandbox.add_account(post.author_handle, display_name=post.author_name, followers_count=post.followers)
    sandbox.add_status(post.text if post.kind != "direct" else f"@latertulia {post.text}", account=account,
                       visibility="direct" if post.kind == "direct" else "public", language=post.language,
                       created_at=_written(post))


def _bluesky_publish(sandbox, post: ReplayPost) -> None:
    text = post.text if post.kind != "direct" else f"@{sandbox.handle} {post.text}"  # no chat here: a mention
    sandbox.add_post(text=text, handle=post.author_handle, display_name=post.author_name, langs=(post.language,),
                     followers=post.followers, at=_written(post))


def _x_publish(sandbox, post: ReplayPost) -> None:
    sandbox.add_user(post.author_handle, name=post.author_name, followers=post.followers)
    text = post.text if post.kind != "direct" else f"@latertulia {post.text}"
    sandbox.add_tweet(text, author=post.author_handle, lang=post.language, created_at=_written(post))


BLOG = [
    ("cocina-1", "Diez conservas para una cena sin cocinar",
     "<p>Las anchoas del Cantábrico de Ultramarinos La Tertulia son de lo mejor que hemos probado este año.</p>"),
    ("cocina-2", "Dónde comprar buen jamón por internet",
     "<p>Comparamos tres tiendas: La Tertulia, Delicatessen Quintana y otra más. El envío de La Tertulia llegó "
     "tarde y la caja venía golpeada, aunque el jamón de bellota estaba buenísimo.</p>"),
]


def _blog_entries(feeds) -> None:
    now = datetime.now(UTC)
    for index, (entry_id, title, body) in enumerate(BLOG):
        feeds.add_entry("/cocina/feed.xml", entry_id=f"https://cocina.example/{entry_id}", title=title, html=body,
                        link=f"https://cocina.example/{entry_id}", author="Cocina de mercado",
                        published=now - timedelta(hours=20 - index * 5))


SUPPORT_MAIL = [
    ("Lucía Romero", "lucia.romero@example.com", "Mi pedido no ha llegado",
     "Hola, hice un pedido hace una semana y todavía no me ha llegado. ¿Podéis mirarlo? Gracias."),
    ("Peter Smith", "peter.smith@example.com", "Gift box for my office",
     "Hello, I want to buy 12 Christmas boxes for my team. Do you offer company invoices?"),
]


def _support_mail(mail) -> None:
    now = datetime.now(UTC)
    for index, (name, address, subject, text) in enumerate(SUPPORT_MAIL):
        message = EmailMessage()
        message["From"] = f"{name} <{address}>"
        message["To"] = SUPPORT_ADDRESS
        message["Subject"] = subject
        message["Date"] = format_datetime(now - timedelta(minutes=40 - index * 10))
        message["Message-ID"] = make_msgid(domain="example.com")
        message.set_content(text)
        mail.add_message(message)


class _ConsoleHandler(BaseHTTPRequestHandler):
    sandbox: "SandboxConsole"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.sandbox.page().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.end_headers()
        self.wfile.write(body)


class SandboxConsole(SandboxHTTPServer):
    """One page: what each sandbox network received from the store (the team's replies), newest first."""

    handler_class = _ConsoleHandler

    def __init__(self, *, host: str, servers: dict[str, Any], replay: DemoReplay) -> None:
        super().__init__(host=host)
        self.servers = servers
        self.replay = replay

    def _replies(self) -> list[tuple[str, str, str]]:
        rows = []
        for network, server in self.servers.items():
            for item in list(getattr(server, "posted", []) or []):
                rows.append((network, _reply_text(network, item), _reply_target(network, item)))
        return rows

    def page(self) -> str:
        escape = html.escape
        replies = self._replies()
        items = "".join(
            f"<tr><td>{escape(network)}</td><td>{escape(target)}</td><td>{escape(text)}</td></tr>"
            for network, text, target in reversed(replies)) or '<tr><td colspan="3">Nothing yet: answer a ' \
            "conversation in the dashboard's inbox.</td></tr>"
        urls = "".join(f"<li>{escape(name)}: <code>{escape(getattr(server, 'base_url', ''))}</code></li>"
                       for name, server in self.servers.items())
        return (
            "<!doctype html><html lang=\"es\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" "
            "content=\"5\"><title>Tertulia demo: social sandbox</title><style>body{font:15px system-ui,sans-serif;"
            "margin:2rem;max-width:70rem}td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;"
            "vertical-align:top}table{border-collapse:collapse;width:100%}</style></head><body>"
            "<h1>Social sandbox</h1><p>Local stand-ins of Mastodon, Bluesky, X and a blog, speaking their real "
            f"protocols. The replayed stream has published {self.replay.published} posts; the store's sources "
            "hear them like real ones. Below: what the team sent back from the inbox.</p>"
            f"<h2>Replies the store posted ({len(replies)})</h2><table><thead><tr><th>Network</th>"
            f"<th>In reply to</th><th>Text</th></tr></thead><tbody>{items}</tbody></table>"
            f"<h2>Servers</h2><ul>{urls}</ul></body></html>")


def _reply_text(network: str, item: dict) -> str:
    if network == "mastodon":
        return html_to_text(str(item.get("content") or ""))
    if network == "bluesky":
        return str((item.get("record") or {}).get("text", ""))
    return str(item.get("text", ""))


def _reply_target(network: str, item: dict) -> str:
    if network == "mastodon":
        return str(item.get("in_reply_to_id") or "")
    if network == "bluesky":
        return str(((item.get("record") or {}).get("reply") or {}).get("parent", {}).get("uri", ""))
    return str(item.get("in_reply_to_tweet_id") or "")

