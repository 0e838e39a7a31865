from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from training.models import LanguageModel


@staff_member_required
def model_list(request: HttpRequest) -> HttpResponse:
    """Registered models, each with a box that streams a reply over WebSocket."""
    models = LanguageModel.objects.filter(enabled=True)
    return render(request, "training/model_list.html", {"models": models})
