"""Staff dashboard views: login with throttling, store switcher, overview, customers. Thin over selectors."""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import LoginView, redirect_to_login
from django.core.paginator import Paginator
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from tertulia.core.models import Store
from tertulia.dashboard import formatting, selectors
from tertulia.dashboard.services import login_failure_record, login_failures_clear

SESSION_STORE_KEY = "dashboard_store_id"
CUSTOMERS_PER_PAGE = 25


def client_ip(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the client wants it to be unless a proxy we trust
    # rewrites it, and a throttle keyed on a forgeable value throttles nothing.
    return request.META.get("REMOTE_ADDR", "")


class DashboardLoginView(LoginView):
    """Django's login view, refusing to check passwords for a username or address that failed too often."""

    template_name = "dashboard/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = str(request.POST.get("username", ""))[:150]
        if selectors.login_throttled(username=username, client_ip=client_ip(request)):
            form = self.get_form_class()(request)
            context = self.get_context_data(form=form, throttled=True)
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(settings.LOGIN_THROTTLE_WINDOW)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        login_failure_record(username=form.data.get("username", "")[:150], client_ip=client_ip(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        login_failures_clear(username=form.cleaned_data.get("username", ""))
        self.request.session.pop(SESSION_STORE_KEY, None)
        return super().form_valid(form)


def store_view(*, json: bool = False) -> Callable:
    """Require a signed-in user with a store, pick the current store, and hand it to the view.

    The store comes from the session only if the user may still see it (a membership can be
    removed while they are signed in); otherwise their first store is taken.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @never_cache
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                if json:
                    return JsonResponse({"error": {"code": "not_authenticated", "message": "Sign in again."}}, status=401)
                return redirect_to_login(request.get_full_path())
            store = selectors.store_for_user(user=request.user, store_id=request.session.get(SESSION_STORE_KEY))
            if store is None:
                if json:
                    return JsonResponse({"error": {"code": "no_store", "message": "No store for this user."}}, status=403)
                return render(request, "dashboard/no_store.html", status=403)
            if request.session.get(SESSION_STORE_KEY) != store.pk:
                request.session[SESSION_STORE_KEY] = store.pk
            with timezone.override(selectors.store_zone(store=store)):
                return view(request, store, *args, **kwargs)

        return wrapper

    return decorator


def _page(request: HttpRequest, store: Store, template: str, section: str, **context) -> HttpResponse:
    context.update(
        store=store,
        stores=selectors.stores_for_user(user=request.user),
        role=selectors.membership_role(store=store, user=request.user),
        section=section,
    )
    return render(request, template, context)


@require_POST
@store_view()
def store_switch(request: HttpRequest, store: Store) -> HttpResponse:
    try:
        wanted = int(request.POST.get("store", ""))
    except ValueError:
        raise Http404 from None
    chosen = selectors.stores_for_user(user=request.user).filter(pk=wanted).first()
    if chosen is None:
        raise Http404
    request.session[SESSION_STORE_KEY] = chosen.pk
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = reverse("dashboard:overview")
    return redirect(target)


def _overview_payload(overview: selectors.Overview) -> dict:
    figures = {
        "events_today": overview.events_today,
        "open_carts": overview.open_carts,
        "open_carts_value": str(overview.open_carts_value.amount),
        "orders_today": overview.orders_today,
        "revenue_today": str(overview.revenue_today.amount),
        "orders_30d": overview.orders_30d,
        "revenue_30d": str(overview.revenue_30d.amount),
        "customers": overview.customers,
        "consent": {
            rate.channel: {"subscribed": rate.subscribed, "customers": rate.customers, "rate": round(rate.rate, 4)}
            for rate in overview.consent
        },
    }
    display = {
        "events_today": formatting.format_count(overview.events_today),
        "open_carts": formatting.format_count(overview.open_carts),
        "open_carts_value": formatting.format_money(overview.open_carts_value),
        "orders_today": formatting.format_count(overview.orders_today),
        "revenue_today": formatting.format_money(overview.revenue_today),
        "orders_30d": formatting.format_count(overview.orders_30d),
        "revenue_30d": formatting.format_money(overview.revenue_30d),
        "customers": formatting.format_count(overview.customers),
        # Seconds shown so a refresh is visible even when no figure moved.
        "generated_at": date_format(timezone.localtime(overview.generated_at), "H:i:s"),
    }
    for rate in overview.consent:
        display[f"consent_{rate.channel}"] = formatting.format_percent(rate.rate)
        display[f"consent_{rate.channel}_count"] = formatting.format_count(rate.subscribed)
    return {
        "store": overview.store.slug,
        "currency": overview.store.currency,
        "generated_at": overview.generated_at.isoformat(),
        "figures": figures,
        "display": display,
    }


@require_GET
@store_view()
def overview(request: HttpRequest, store: Store) -> HttpResponse:
    figures = selectors.overview_figures(store=store)
    payload = _overview_payload(figures)
    consent = [
        {"channel": rate.channel, "subscribed": rate.subscribed, "percent": formatting.format_percent(rate.rate),
         "width": f"{min(rate.rate, 1.0) * 100:.1f}"}
        for rate in figures.consent
    ]
    return _page(request, store, "dashboard/overview.html", "overview",
                 overview=figures, display=payload["display"], consent=consent)


@require_GET
@store_view(json=True)
def overview_json(request: HttpRequest, store: Store) -> HttpResponse:
    return JsonResponse(_overview_payload(selectors.overview_figures(store=store)))


@require_GET
@store_view()
def customers(request: HttpRequest, store: Store) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    found = selectors.customers_search(store=store, query=query)
    page = Paginator(found, CUSTOMERS_PER_PAGE).get_page(request.GET.get("page"))
    people = list(page.object_list)
    prefetch_related_objects(people, "identities")
    rows = []
    for person in people:
        by_kind: dict[str, str] = {}
        for identity in sorted(person.identities.all(), key=lambda item: item.pk):
            by_kind.setdefault(identity.kind, identity.value)
        rows.append({"customer": person, "email": by_kind.get("email", ""), "phone": by_kind.get("phone", "")})
    return _page(request, store, "dashboard/customers.html", "customers", page=page, rows=rows, query=query)


@require_GET
@store_view()
def customer(request: HttpRequest, store: Store, customer_id: int) -> HttpResponse:
    person = selectors.customer_get(store=store, customer_id=customer_id)
    if person is None:
        raise Http404(_("No such customer in this store."))
    if person.merged_into_id:
        return redirect("dashboard:customer", customer_id=person.merged_into_id)
    from tertulia.dashboard.views_journeys import timeline_with_deliveries  # the person's messages

    return _page(
        request, store, "dashboard/customer.html", "customers",
        customer=person,
        identities=selectors.customer_identities(store=store, customer=person),
        consents=selectors.customer_consents(store=store, customer=person),
        carts=selectors.customer_carts(store=store, customer=person)[:20],
        orders=selectors.customer_orders(store=store, customer=person)[:20],
        timeline=timeline_with_deliveries(store=store, customer=person,
                                          timeline=selectors.customer_timeline(store=store, customer=person)),
    )
