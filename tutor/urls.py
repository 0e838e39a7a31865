from django.urls import include, path

from tutor import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("runs/", include("tutor.runs.urls")),
    path("evaluations/", include("tutor.evals.urls")),
]
