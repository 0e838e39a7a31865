from django.urls import path

from training import consumers

websocket_urlpatterns = [
    path("ws/training/models/<int:model_id>/try/", consumers.ModelTryConsumer.as_asgi()),
    path("ws/training/models/<int:model_id>/playground/", consumers.PlaygroundConsumer.as_asgi()),
    path("ws/training/jobs/<int:job_id>/", consumers.TrainingJobConsumer.as_asgi()),
]
