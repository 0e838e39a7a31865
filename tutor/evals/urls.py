"""Evaluation pages under /evaluations/ (namespace ``evals``)."""

from django.urls import path

from tutor.evals import views

app_name = "evals"
urlpatterns = [
    path("", views.evaluation_list, name="list"),
    path("new/", views.evaluation_new, name="new"),
    path("<int:evaluation_id>/", views.evaluation_detail, name="detail"),
    path("<int:evaluation_id>/cancel/", views.evaluation_cancel, name="cancel"),
]
