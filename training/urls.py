from django.urls import path

from training import views

app_name = "training"
urlpatterns = [
    path("models/", views.model_list, name="models"),
]
