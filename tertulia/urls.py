"""URL map: API, webhooks, dashboard, admin, operations."""

from django.contrib import admin
from django.urls import include, path

from tertulia.catalog.api import router as catalog_router
from tertulia.channels.api import router as deliveries_router
from tertulia.commerce.api import router as commerce_router
from tertulia.core.api import api
from tertulia.core.views import healthz, metrics_view
from tertulia.customers.api import router as customers_router
from tertulia.events.api import router as events_router
from tertulia.inbox.api import router as inbox_router
from tertulia.journeys.api import router as journeys_router
from tertulia.listening.api import router as listening_router
from tertulia.ugc.api import public_urls

api.add_router("", events_router)
api.add_router("", catalog_router)
api.add_router("", customers_router)
api.add_router("", commerce_router)
api.add_router("", journeys_router)
api.add_router("", deliveries_router)
api.add_router("", listening_router)
api.add_router("", inbox_router)

urlpatterns = [
    path("api/v1/public/", public_urls()),
    path("api/v1/", api.urls),
    path("webhooks/", include("tertulia.events.webhook_urls")),
    path("webhooks/", include("tertulia.channels.webhook_urls")),
    path("webhooks/", include("tertulia.listening.webhook_urls")),
    path("app/", include("tertulia.dashboard.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("shop/", include("tertulia.ugc.shop_views")),
    path("", include("tertulia.ugc.urls")),  # /embed/ /feeds/ /widget.js /review/ /ugc/photos/
    path("", include("tertulia.channels.urls")),  # /r/ /o/ /u/ /a/ /c/: links in messages
]
