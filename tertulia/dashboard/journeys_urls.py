"""Dashboard pages of the journeys area, mounted under /app/ in the dashboard namespace."""

urlpatterns: list = []
