from django.urls import path

from replication.dashboard import views
from replication.evidence import views as evidence
from replication.protection import views as protection

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("pairs/<slug:name>/", views.pair_detail, name="pair"),
    path("pairs/<slug:name>/report/<str:month>/", evidence.report_page, name="pair-report"),
    path("pairs/<slug:name>/report/<str:month>.csv", evidence.report_csv, name="pair-report-csv"),
    path("pairs/<slug:name>/reconcile/", views.pair_reconcile, name="pair-reconcile"),
    path("pairs/<slug:name>/protection/", protection.check_now, name="pair-protection"),
    path("pairs/<slug:name>/guard/", protection.guard_action, name="pair-guard"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("runs/<int:run_id>/progress/", views.run_progress, name="run-progress"),
    path(
        "runs/<int:run_id>/discrepancies.csv",
        views.run_discrepancies_csv,
        name="run-discrepancies-csv",
    ),
]
