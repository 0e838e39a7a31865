"""What every WebSocket consumer shares: close codes and the reading of htmx's ws messages.

htmx's ws extension sends a form as a JSON object of string values (plus ``HEADERS``). A consumer
reads it through :class:`FormConsumer`: anything that is not a JSON object is ignored, and a value
that is not a string (``null``, a number, a list) reads as absent, never as its ``str()``.
"""

from __future__ import annotations

import json
from abc import ABCMeta, abstractmethod
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer

FORBIDDEN = 4403  # not signed in, or not allowed to see this
NOT_FOUND = 4404  # no such object


class FormMessage:
    """One form posted over the socket; :meth:`text` gives a field's string value or ``None``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def text(self, name: str) -> str | None:
        value = self._data.get(name)
        return value if isinstance(value, str) else None

    def values(self, name: str) -> list[object]:
        """Every value of a field that may repeat (ticked checkboxes): htmx sends one as a string and
        several as a list; none is ``[]``. The values are not checked: the caller reads them."""
        value = self._data.get(name)
        return [] if value is None else value if isinstance(value, list) else [value]


def parse_form(text_data: str | None) -> FormMessage | None:
    """The message as a form, or ``None`` when it is not a JSON object (ignored, never an error)."""
    try:
        data = json.loads(text_data or "")
    except (json.JSONDecodeError, RecursionError):
        return None
    return FormMessage(data) if isinstance(data, dict) else None


class FormConsumer(AsyncWebsocketConsumer):
    """A consumer that receives htmx forms: subclasses implement :meth:`receive_form`."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        form = parse_form(text_data)
        if form is not None:
            await self.receive_form(form)

    async def receive_form(self, form: FormMessage) -> None:
        """Handle one form; a consumer that takes none keeps this default, which ignores it."""


class LiveStateConsumer(FormConsumer, metaclass=ABCMeta):
    """The live part of a staff page about one object (a teaching run, an evaluation): on connect the
    current fragments from :meth:`snapshot`, then every update sent to :meth:`group` as
    ``{"type": ..., "fragments": {...}}``. With ``?part=row`` the object's row of its list is sent
    instead of the page's live part ("state"). Subclasses name the URL kwarg (``id_kwarg``) and route
    their event type to :meth:`send_fragments`."""

    id_kwarg = "id"

    @abstractmethod
    def group(self, object_id: int) -> str:
        """The channel-layer group that carries the updates of object ``object_id``."""

    @abstractmethod
    async def snapshot(self, object_id: int) -> dict[str, str] | None:
        """The fragments by part, or None when there is no such object."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user and user.is_authenticated and user.is_staff):
            await self.close(code=FORBIDDEN)
            return
        object_id = self.scope["url_route"]["kwargs"][self.id_kwarg]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.part = "row" if query.get("part") == ["row"] else "state"
        fragments = await self.snapshot(object_id)
        if fragments is None:
            await self.close(code=NOT_FOUND)
            return
        self.group_name = self.group(object_id)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
        await self.send(text_data=fragments[self.part])

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group_name", None):
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def send_fragments(self, event: dict) -> None:
        await self.send(text_data=event["fragments"][self.part])
