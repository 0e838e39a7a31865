"""WebSocket routes of the learner side (kept apart from the teaching-run routes)."""

from django.urls import path

from tutor.learn import consumers

websocket_urlpatterns = [
    path("ws/learn/sessions/<int:session_id>/", consumers.TutoringSessionConsumer.as_asgi()),
]
