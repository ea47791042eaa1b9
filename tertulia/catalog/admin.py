"""Django admin for the catalogue: categories and products."""

from django.contrib import admin

from tertulia.catalog.models import Category, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "external_id", "parent", "store", "updated_at"]
    list_filter = ["store"]
    search_fields = ["name", "external_id"]
    list_select_related = ["parent", "store"]
    raw_id_fields = ["parent"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "title", "price", "currency", "stock", "category", "active", "store"]
    list_filter = ["active", "store", "currency"]
    search_fields = ["sku", "title", "external_id"]
    list_select_related = ["category", "store"]
    raw_id_fields = ["category"]
