from django.urls import path

from tutor.runs import consumers

websocket_urlpatterns = [
    path("ws/tutor/runs/<int:run_id>/", consumers.TeachingRunConsumer.as_asgi()),
]
