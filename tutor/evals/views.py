"""Pages of evaluations (staff only): start one, list them, watch one fill in and compare."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from teachloop.auth import staff_required
from training.models import Adapter, TrainingJob
from training.services import default_model
from tutor.evals import live, services
from tutor.evals.forms import EvaluationForm
from tutor.models import Course, Evaluation, TeachingRun


def _evaluations():
    return Evaluation.objects.select_related("course", "student")


@staff_required
def evaluation_list(request: HttpRequest) -> HttpResponse:
    rows = list(_evaluations()[:200])
    return render(
        request,
        "tutor/evals/evaluation_list.html",
        {"evaluations": rows, "live": [e.pk for e in rows if not e.is_finished]},
    )


def _initial(request: HttpRequest) -> dict:
    """Start from an adapter (``?adapter=``), a training job (``?job=``) or a teaching run (``?run=``):
    its student, its adapter(s) and, for a run, its course."""
    initial: dict = {"student": default_model(role="student"), "split": "held-out"}
    courses = list(Course.objects.all()[:2])
    if len(courses) == 1:  # the one course there is
        initial["course"] = courses[0]
    adapters: list[Adapter] = []
    if (value := request.GET.get("adapter", "")).isdigit():
        adapters = list(Adapter.objects.filter(pk=int(value)))
    elif (value := request.GET.get("job", "")).isdigit():
        job = TrainingJob.objects.filter(pk=int(value)).select_related("adapter").first()
        adapters = [job.adapter] if job is not None and job.adapter is not None else []
    elif (value := request.GET.get("run", "")).isdigit():
        run = TeachingRun.objects.filter(pk=int(value)).select_related("course").first()
        if run is not None:
            initial["course"], initial["student"] = run.course, run.student
            adapters = list(Adapter.objects.filter(path=run.adapter_path)) if run.adapter_path else []
    if adapters:
        initial["student"], initial["adapters"] = adapters[0].base_model, adapters
    return initial


@staff_required
def evaluation_new(request: HttpRequest) -> HttpResponse:
    form = EvaluationForm(request.POST or None, request.FILES or None, initial=_initial(request))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        upload = data.get("items_file")
        try:
            evaluation = services.evaluation_create(
                student=data["student"],
                adapters=list(data["adapters"]),
                course=data.get("course"),
                split=data["split"],
                upload=data.get("upload_text"),
                upload_name=upload.name if upload is not None else "",
                max_new_tokens=data["max_new_tokens"],
                user=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Evaluation {evaluation.pk} queued.")
            return redirect("evals:detail", evaluation_id=evaluation.pk)
    return render(request, "tutor/evals/evaluation_new.html", {"form": form})


@staff_required
def evaluation_detail(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    evaluation = get_object_or_404(_evaluations(), pk=evaluation_id)
    return render(request, "tutor/evals/evaluation_detail.html", live.evaluation_context(evaluation))


@staff_required
@require_POST
def evaluation_cancel(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    evaluation = services.evaluation_cancel(evaluation=get_object_or_404(Evaluation, pk=evaluation_id))
    messages.info(
        request,
        f"Evaluation {evaluation.pk}: {evaluation.get_status_display().lower()}"
        + (" (stopping after the current batch)" if evaluation.cancel_requested else "")
        + ".",
    )
    return redirect("evals:detail", evaluation_id=evaluation.pk)
