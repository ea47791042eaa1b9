"""Public addresses in messages, mounted at the site root: /r/ click, /o/ open, /u/ unsubscribe, /a/ answer, /c/ confirm.

Tokens never hold a slash; `path` only lets a mangled link (a copied URL with one) reach our own 404 page.
"""

from django.urls import path

from tertulia.channels import views

app_name = "tracking"

urlpatterns = [
    path("r/<path:token>", views.click, name="click"),
    path("o/<path:token>.gif", views.open_pixel, name="open"),
    path("u/<path:token>", views.unsubscribe, name="unsubscribe"),
    path("a/<path:token>", views.answer, name="answer"),
    path("c/<path:token>", views.confirm, name="confirm"),
]
