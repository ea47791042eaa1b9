"""Dashboard pages of the moderation area, mounted under /app/ in the dashboard namespace."""

urlpatterns: list = []
