"""Background work of listening: telling the team about an alert by e-mail (Django's mail, sent by the worker).

Staff e-mails, not messages to shoppers: no consent applies, they go to the store's owners, managers and
community managers who have an address. The task re-reads the alert when it runs, so a retry after the
alert closed says so instead of repeating stale news, and `notified_at` makes a second run send nothing.
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django_tasks import task

from tertulia.core.models import Membership, Role
from tertulia.listening.models import Alert, AlertKind

log = logging.getLogger("tertulia.listening")

ALERTED_ROLES = (Role.OWNER, Role.MANAGER, Role.COMMUNITY_MANAGER)


def alert_recipients(store_id: int) -> list[str]:
    users = Membership.objects.for_store(store_id).filter(role__in=ALERTED_ROLES).values_list("user_id", flat=True)
    emails = get_user_model().objects.filter(pk__in=list(users), is_active=True).exclude(email="") \
        .values_list("email", flat=True)
    return sorted(set(emails))


def alert_text(alert: Alert) -> tuple[str, str]:
    """(subject, body) in the active language."""
    store = alert.store
    details = alert.details or {}
    url = f"{getattr(settings, 'TERTULIA_PUBLIC_URL', '')}/app/listening/"
    if alert.kind == AlertKind.NEGATIVE_SPIKE:
        subject = _("%(store)s: spike of negative mentions") % {"store": store.name}
        lines = [
            _("%(count)s negative mentions in the hour from %(hour)s (UTC); usually about %(baseline)s.") % {
                "count": details.get("negative", "?"), "hour": str(details.get("hour", ""))[:16].replace("T", " "),
                "baseline": details.get("baseline", "?")},
            "",
            _("See them and answer in the dashboard: %(url)s") % {"url": url},
        ]
    else:
        source = alert.source
        subject = _("%(store)s: the %(source)s connector has stopped working") % {
            "store": store.name, "source": source.name if source else "?"}
        lines = [
            _("It failed %(count)s times in a row since %(since)s.") % {
                "count": details.get("failures", "?"), "since": str(details.get("since", ""))[:16].replace("T", " ")},
            _("Last error: %(error)s") % {"error": details.get("error", "")},
            "",
            _("Nothing is heard from it until it is fixed. Its health is in the dashboard: %(url)s") % {"url": url},
        ]
    return subject, "\n".join([*lines, "", store.name])


@task()
def alert_notify(alert_id: int) -> str:
    alert = Alert.objects.select_related("store", "source").filter(pk=alert_id).first()
    if alert is None:
        return "alert gone"
    if alert.notified_at is not None:
        return "already notified"
    recipients = alert_recipients(alert.store_id)
    if not recipients:
        log.warning("listening alert with nobody to tell", extra={"store_id": alert.store_id, "alert_id": alert.pk})
    else:
        with translation.override(alert.store.language or settings.LANGUAGE_CODE):
            subject, body = alert_text(alert)
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    Alert.objects.filter(pk=alert.pk, notified_at__isnull=True).update(notified_at=timezone.now())
    return f"sent to {len(recipients)}"
