"""URLs of the staff dashboard, mounted at /app/."""

from django.contrib.auth.views import LogoutView
from django.urls import path

from tertulia.dashboard import inbox_urls, journeys_urls, listening_urls, moderation_urls, views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("overview.json", views.overview_json, name="overview_json"),
    path("login/", views.DashboardLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("store/", views.store_switch, name="store_switch"),
    path("customers/", views.customers, name="customers"),
    path("customers/<int:customer_id>/", views.customer, name="customer"),
]
urlpatterns += journeys_urls.urlpatterns + moderation_urls.urlpatterns + listening_urls.urlpatterns
urlpatterns += inbox_urls.urlpatterns
