"""WebSocket routes of the learner side (kept apart from the teaching-run routes)."""

from django.urls import path

from tutor import consumers_learn

websocket_urlpatterns = [
    path("ws/learn/sessions/<int:session_id>/", consumers_learn.TutoringSessionConsumer.as_asgi()),
]
