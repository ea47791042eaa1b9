"""The sample store the demo serves: a product list and product pages embedding the reviews widget.

It stands in for a merchant's own shop, so it uses only what any store page would: one script tag
and the `<tertulia-reviews>` element. Mounted at /shop/ (this module is its own URLconf).
"""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import translation
from django.views.decorators.http import require_GET

from tertulia.catalog.selectors import products_list
from tertulia.core.models import Store

LANGUAGES = ("es", "en")


def _language(request: HttpRequest, store: Store) -> str:
    # ?lang= wins (the page's switch), then the visitor's language, then the store's.
    wanted = request.GET.get("lang", "")
    if wanted in LANGUAGES:
        return wanted
    current = (translation.get_language() or store.language or "es")[:2]
    return current if current in LANGUAGES else "es"


def _store(slug: str) -> Store:
    store = Store.objects.filter(slug=slug).first()
    if store is None:
        raise Http404
    return store


def _render(request: HttpRequest, store: Store, template: str, **context) -> HttpResponse:
    language = _language(request, store)
    with translation.override(language):
        response = render(request, template, {"store": store, "language": language, **context})
    response["Content-Language"] = language
    return response


@require_GET
def shop_home(request: HttpRequest, store: str) -> HttpResponse:
    shop = _store(store)
    products = products_list(store=shop, active=True).order_by("category__name", "title")
    return _render(request, shop, "ugc/shop.html", products=products)


@require_GET
def shop_product(request: HttpRequest, store: str, sku: str) -> HttpResponse:
    shop = _store(store)
    product = products_list(store=shop, sku=sku).first()
    if product is None:
        raise Http404
    # A review-request link may land here with its signed token; the widget sends it with the review
    # and the API checks it (verified buyer). Anything else is ignored by the server.
    token = request.GET.get("token", "")[:1000]
    return _render(request, shop, "ugc/shop_product.html", product=product, token=token)


urlpatterns = [
    path("<slug:store>/", shop_home, name="shop_home"),
    path("<slug:store>/<str:sku>/", shop_product, name="shop_product"),
]
