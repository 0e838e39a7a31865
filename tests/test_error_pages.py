"""The error pages a person sees when the site itself fails (DEBUG off, as in production)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def failing_client(settings, django_user_model):
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    client.force_login(django_user_model.objects.create_user("ada", password="pw-123456789"))
    return client  # its next request reads the session from the database


def test_a_database_that_is_not_answering_is_a_503_saying_so(failing_client):
    restarting = OperationalError("terminating connection due to administrator command")
    with mock.patch("django.contrib.sessions.backends.db.SessionStore.load", side_effect=restarting):
        response = failing_client.get("/learn/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert b"The database is not answering" in response.content


def test_any_other_failure_is_the_plain_500_page(failing_client):
    with mock.patch(
        "django.contrib.sessions.backends.db.SessionStore.load", side_effect=RuntimeError("a bug")
    ):
        response = failing_client.get("/learn/")
    assert response.status_code == 500
    assert b"failed on our side" in response.content
    assert b"database" not in response.content
