from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from training.models import LanguageModel
from training.services import default_model


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    ctx: dict[str, object] = {
        "default_teacher": default_model(role="teacher"),
        "default_student": default_model(role="student"),
    }
    if request.user.is_staff:
        ctx["models"] = LanguageModel.objects.all()
    return render(request, "tutor/dashboard.html", ctx)


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and container healthchecks: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
