from django.contrib import admin
from django.http import HttpResponse
from django.urls import path
from django.views.generic import RedirectView

from replication.ingest.views import post_events


def healthz(request):
    """Liveness for load balancers: no login, no database."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/events", post_events, name="ingest-events"),
    # Until the dashboard pages exist, the admin is where pairs are seen and managed.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
]
