"""Django admin for carts and orders, the projections of store events."""

from django.contrib import admin

from tertulia.commerce.models import Cart, Order


@admin.register(Cart)
class CartAdmin(admin.ModelAdmin):
    list_display = ["external_id", "status", "total", "currency", "customer", "last_event_at", "store"]
    list_filter = ["status", "store", "currency"]
    search_fields = ["external_id", "order_external_id", "customer__identities__value"]
    date_hierarchy = "last_event_at"
    list_select_related = ["customer", "store"]
    raw_id_fields = ["customer"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["external_id", "status", "total", "currency", "customer", "placed_at", "store"]
    list_filter = ["status", "store", "currency"]
    search_fields = ["external_id", "cart_external_id", "customer__identities__value"]
    date_hierarchy = "placed_at"
    list_select_related = ["customer", "store"]
    raw_id_fields = ["customer"]
