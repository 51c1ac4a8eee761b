from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path

from replication.ingest.views import post_events


def healthz(request):
    """Liveness for load balancers: no login, no database."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/events", post_events, name="ingest-events"),
    path("", include("replication.dashboard.urls")),
]
