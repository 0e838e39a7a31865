"""All WebSocket routes; each app contributes its own list."""

from training.routing import websocket_urlpatterns as training_ws
from tutor.learn.routing import websocket_urlpatterns as learn_ws
from tutor.runs.routing import websocket_urlpatterns as tutor_ws

websocket_urlpatterns = [*training_ws, *tutor_ws, *learn_ws]
