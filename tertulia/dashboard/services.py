"""Writes behind the staff dashboard: the failed-login counters used for throttling."""

from django.conf import settings
from django.core.cache import cache

from tertulia.dashboard.selectors import login_throttle_keys


def login_failure_record(*, username: str, client_ip: str) -> None:
    """Count one failed login against the username and the client address.

    A fixed window: the first failure starts it and later ones do not extend it, so a locked-out
    user gets back in at a predictable time.
    """
    for key in login_throttle_keys(username=username, client_ip=client_ip):
        cache.add(key, 0, timeout=settings.LOGIN_THROTTLE_WINDOW)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=settings.LOGIN_THROTTLE_WINDOW)


def login_failures_clear(*, username: str) -> None:
    """Forget a username's failures after it signs in; the address keeps its count.

    Clearing the address too would let someone holding one valid account reset the counter that
    slows their guessing at other accounts.
    """
    if username:
        cache.delete(login_throttle_keys(username=username, client_ip="")[0])
