"""All WebSocket routes; each app contributes its own list."""

from training.routing import websocket_urlpatterns as training_ws
from tutor.routing import websocket_urlpatterns as tutor_ws
from tutor.routing_learn import websocket_urlpatterns as learn_ws

websocket_urlpatterns = [*training_ws, *tutor_ws, *learn_ws]
