from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from training.models import LanguageModel
from training.services import default_models


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    # Staff see every model: the defaults are picked from that list (one query either way).
    models = list(LanguageModel.objects.all()) if request.user.is_staff else None
    defaults = default_models(models=models)
    ctx: dict[str, object] = {"default_teacher": defaults["teacher"], "default_student": defaults["student"]}
    if models is not None:
        ctx["models"] = models
    return render(request, "tutor/dashboard.html", ctx)


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and container healthchecks: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
