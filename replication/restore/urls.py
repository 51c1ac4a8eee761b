from django.urls import path

from replication.restore import views

app_name = "restore"

urlpatterns = [
    path("pairs/<slug:name>/restore/", views.restore_form, name="form"),
    path("pairs/<slug:name>/restore/panel/", views.restore_panel, name="panel"),
    path("pairs/<slug:name>/drill/", views.drill_now, name="drill"),
    path("restores/<int:job_id>/", views.restore_detail, name="job"),
    path("restores/<int:job_id>/cancel/", views.restore_cancel, name="cancel"),
    path("restores/<int:job_id>/progress/", views.restore_progress, name="progress"),
    path("restores/<int:job_id>/outcomes.csv", views.restore_outcomes_csv, name="outcomes-csv"),
]
