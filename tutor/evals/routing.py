from django.urls import path

from tutor.evals import consumers

websocket_urlpatterns = [
    path("ws/tutor/evaluations/<int:evaluation_id>/", consumers.EvaluationConsumer.as_asgi()),
]
