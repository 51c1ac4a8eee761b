from django.contrib import admin
from django.urls import include, path

from replication.ingest.views import post_events
from replication.monitoring import views as monitoring
from replication.protection import api as guard_api

# The admin's pages (login included) say whose they are.
admin.site.site_header = admin.site.site_title = "backupsite"

urlpatterns = [
    path("admin/", admin.site.urls),
    # No login on these three: machines and READMEs read them (see DESIGN.md, "Dashboard").
    path("healthz", monitoring.healthz, name="healthz"),
    path("metrics", monitoring.metrics_view, name="metrics"),
    path("badge/<str:token>.svg", monitoring.badge, name="badge"),
    path("api/v1/events", post_events, name="ingest-events"),
    path("api/v1/guard", guard_api.holds, name="guard-holds"),
    path("api/v1/pairs/<slug:name>/guard", guard_api.pair_hold, name="guard-pair"),
    path("api/v1/pairs/<slug:name>/restored", guard_api.restored, name="guard-restored"),
    path("", include("replication.dashboard.urls")),
    path("", include("replication.restore.urls")),
]
