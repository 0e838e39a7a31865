"""Teaching-run pages under /runs/ (namespace ``runs``)."""

from django.urls import path

from tutor.runs import views

app_name = "runs"
urlpatterns = [
    path("", views.run_list, name="list"),
    path("new/", views.run_new, name="new"),
    path("<int:run_id>/", views.run_detail, name="detail"),
    path("<int:run_id>/cancel/", views.run_cancel, name="cancel"),
    path("<int:run_id>/resume/", views.run_resume, name="resume"),
    path("<int:run_id>/fine-tune/", views.run_fine_tune, name="fine-tune"),
    path("<int:run_id>/explanations/", views.explanation_list, name="explanations"),
    path("<int:run_id>/explanations/<int:explanation_id>/", views.explanation_card, name="explanation"),
    path(
        "<int:run_id>/explanations/<int:explanation_id>/rate/",
        views.explanation_rate,
        name="explanation-rate",
    ),
    path(
        "<int:run_id>/explanations/<int:explanation_id>/edit/",
        views.explanation_edit,
        name="explanation-edit",
    ),
]
