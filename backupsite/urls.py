from django.contrib import admin
from django.http import HttpResponse
from django.urls import path


def healthz(request):
    """Liveness for load balancers: no login, no database."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]
