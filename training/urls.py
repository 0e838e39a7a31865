from django.urls import path

from training import views, views_ship

app_name = "training"
urlpatterns = [
    path("models/", views.model_list, name="models"),
    path("models/<int:model_id>/playground/", views.model_playground, name="playground"),
    path("jobs/", views.job_list, name="jobs"),
    path("jobs/<int:job_id>/", views.job_detail, name="job"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<int:job_id>/retry/", views.job_retry, name="job-retry"),
    path("fine-tune/", views.fine_tune, name="fine-tune"),
    path("datasets/upload/", views.dataset_upload, name="dataset-upload"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset"),
    path("datasets/<int:dataset_id>/download/", views.dataset_download, name="dataset-download"),
    path("adapters/", views.adapter_list, name="adapters"),
    path("adapters/<int:adapter_id>/download/", views.adapter_download, name="adapter-download"),
    path("adapters/<int:adapter_id>/merge/", views_ship.adapter_merge, name="adapter-merge"),
    path(
        "adapters/<int:adapter_id>/merge/state/", views_ship.adapter_merge_state, name="adapter-merge-state"
    ),
    path(
        "adapters/merges/<int:merge_id>/download/", views_ship.adapter_merge_download, name="merge-download"
    ),
    path("adapters/<int:adapter_id>/load/<int:model_id>/", views_ship.adapter_load, name="adapter-load"),
]
