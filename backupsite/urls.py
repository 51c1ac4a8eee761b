from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from replication.ingest.views import post_events
from replication.monitoring import views as monitoring

urlpatterns = [
    path("admin/", admin.site.urls),
    # No login on these three: machines and READMEs read them (see DESIGN.md, "Dashboard").
    path("healthz", monitoring.healthz, name="healthz"),
    path("metrics", monitoring.metrics_view, name="metrics"),
    path("badge/<str:token>.svg", monitoring.badge, name="badge"),
    path("api/v1/events", post_events, name="ingest-events"),
    # Until the dashboard pages exist, the admin is where pairs are seen and managed.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
]
