"""Public community pages, mounted at the site root: embed, review feed, widget script, photos, review form."""

from django.urls import path

from tertulia.ugc import views
from tertulia.ugc.cors import cors

app_name = "ugc"

urlpatterns = [
    path("embed/<slug:store>/products/<str:sku>", cors(views.embed), name="embed"),
    path("feeds/<slug:store>/product-reviews.xml", views.review_feed, name="review_feed"),
    path("widget.js", views.widget_js, name="widget_js"),
    path("ugc/photos/<str:key>.<str:extension>", views.photo, name="photo"),
    path("review/<str:token>", views.review_form, name="review_form"),
]
