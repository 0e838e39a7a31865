"""Pages of teaching runs (staff only): start, list, watch live, cancel/resume, explanations with
ratings and edits, fine-tune now. Kept apart from tutor/views.py to keep merges simple."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from teachloop.auth import staff_required
from training.services import default_models
from tutor.models import RunExplanation, TeachingRun
from tutor.runs import live, selectors, services
from tutor.runs.forms import ExplanationEditForm, ResumeForm, TeachingRunForm

RATINGS = {"up": True, "down": False, "clear": None}


def _runs():
    return TeachingRun.objects.select_related("course", "student", "teacher")


@staff_required
def run_list(request: HttpRequest) -> HttpResponse:
    runs = list(_runs().prefetch_related("rounds")[:200])  # each row shows its latest round
    return render(
        request,
        "tutor/runs/run_list.html",
        {"runs": runs, "live": [run.pk for run in runs if not run.is_finished]},
    )


@staff_required
def run_new(request: HttpRequest) -> HttpResponse:
    initial = default_models()  # the form's fields are named "student" and "teacher" too
    form = TeachingRunForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            run = services.teaching_run_create(
                course=data["course"],
                student=data["student"],
                teacher=data["teacher"],
                user=request.user,
                train=form.train_config(),
                enqueue=True,
                **form.run_config(),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Run {run.pk} queued.")
            return redirect("runs:detail", run_id=run.pk)
    return render(request, "tutor/runs/run_new.html", {"form": form})


@staff_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(_runs(), pk=run_id)
    return render(
        request,
        "tutor/runs/run_detail.html",
        {**live.teaching_run_context(run), "approved": selectors.teaching_run_learnable_approvals(run=run)},
    )


def _back_to_run(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run page again (its controls post with htmx, so htmx is told to go there)."""
    url = reverse("runs:detail", args=[run_id])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@staff_required
@require_POST
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = services.teaching_run_cancel(run=get_object_or_404(TeachingRun, pk=run_id))
    messages.info(
        request, f"Run {run.pk}: {'stopping after the current step' if run.cancel_requested else run.status}."
    )
    return _back_to_run(request, run.pk)


@staff_required
@require_POST
def run_resume(request: HttpRequest, run_id: int) -> HttpResponse:
    form = ResumeForm(request.POST)
    extra = (form.cleaned_data.get("extra_rounds") or 0) if form.is_valid() else 0
    try:
        services.teaching_run_resume(run=get_object_or_404(TeachingRun, pk=run_id), extra_rounds=extra)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Run {run_id} queued; it continues from its last finished step.")
    return _back_to_run(request, run_id)


@staff_required
@require_POST
def run_fine_tune(request: HttpRequest, run_id: int) -> HttpResponse:
    """Fine-tune now on approved feedback: a training job, then its page."""
    run = get_object_or_404(TeachingRun, pk=run_id)
    try:
        job, pairs = services.teaching_run_feedback_fine_tune(run=run, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("runs:explanations", run_id=run.pk)
    note = f" {pairs.record_count} preference pairs saved as dataset {pairs.pk} for DPO." if pairs else ""
    messages.success(
        request, f"Training job {job.pk} queued on {job.dataset.record_count} approved explanations.{note}"
    )
    return redirect("training:job", job_id=job.pk)


@staff_required
def explanation_list(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(_runs(), pk=run_id)
    explanations = run.explanations.select_related("rated_by")
    return render(
        request,
        "tutor/runs/explanation_list.html",
        {
            "run": run,
            "explanations": explanations,
            "approved": selectors.teaching_run_learnable_approvals(run=run),
        },
    )


def _explanation(run_id: int, explanation_id: int) -> RunExplanation:
    return get_object_or_404(
        RunExplanation.objects.select_related("run__course"), pk=explanation_id, run_id=run_id
    )


def _card(
    request: HttpRequest, explanation: RunExplanation, *, form: ExplanationEditForm | None = None
) -> HttpResponse:
    if not request.htmx and form is None:
        return redirect("runs:explanations", run_id=explanation.run_id)
    if form is not None:
        return render(request, "tutor/runs/partials/explanation_edit.html", {"x": explanation, "form": form})
    # The card, and the fine-tune button with its new count of approvals (swapped out of band).
    run = explanation.run
    return render(
        request,
        "tutor/runs/partials/explanation_card.html",
        {
            "x": explanation,
            "run": run,
            "oob": True,
            "approved": selectors.teaching_run_learnable_approvals(run=run),
        },
    )


@staff_required
def explanation_card(request: HttpRequest, run_id: int, explanation_id: int) -> HttpResponse:
    return _card(request, _explanation(run_id, explanation_id))


@staff_required
@require_POST
def explanation_rate(request: HttpRequest, run_id: int, explanation_id: int) -> HttpResponse:
    explanation = _explanation(run_id, explanation_id)
    choice = request.POST.get("rating", "")
    if choice not in RATINGS:
        return HttpResponse(f"rating must be one of {', '.join(RATINGS)}", status=400)
    services.run_explanation_rate(explanation=explanation, rating=RATINGS[choice], user=request.user)
    return _card(request, explanation)


@staff_required
def explanation_edit(request: HttpRequest, run_id: int, explanation_id: int) -> HttpResponse:
    explanation = _explanation(run_id, explanation_id)
    form = ExplanationEditForm(request.POST or None, initial={"text": explanation.final_text})
    if request.method == "POST" and form.is_valid():
        try:
            services.run_explanation_edit(
                explanation=explanation, text=form.cleaned_data["text"], user=request.user
            )
        except ValidationError as exc:
            form.add_error("text", exc)
        else:
            return _card(request, explanation)
    return _card(request, explanation, form=form)
