"""Every WebSocket route of the site."""

from training.routing import websocket_urlpatterns as training_ws
from tutor.evals.routing import websocket_urlpatterns as evals_ws
from tutor.learn.routing import websocket_urlpatterns as learn_ws
from tutor.runs.routing import websocket_urlpatterns as tutor_ws

websocket_urlpatterns = [*training_ws, *tutor_ws, *evals_ws, *learn_ws]
