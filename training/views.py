from __future__ import annotations

import io
import zipfile
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from teachloop.auth import staff_required
from training import jobs, previews, shipping
from training.core.datasets import DatasetError
from training.core.errors import first_line
from training.forms import DatasetUploadForm, FineTuneForm
from training.models import Adapter, LanguageModel, TrainingDataset, TrainingJob


@staff_required
def model_list(request: HttpRequest) -> HttpResponse:
    """Registered models, each with a box that streams a reply over WebSocket."""
    models = LanguageModel.objects.filter(enabled=True)
    return render(request, "training/model_list.html", {"models": models})


@staff_required
def model_playground(request: HttpRequest, model_id: int) -> HttpResponse:
    """One prompt answered by the base and by chosen adapters of it, side by side (streamed over
    WebSocket by PlaygroundConsumer). Only adapters whose folder is still there are offered; a model
    served over HTTP has none here."""
    model = get_object_or_404(LanguageModel, pk=model_id, enabled=True)
    served = model.backend == LanguageModel.Backend.OPENAI
    adapters = [] if served else list(model.adapters.select_related("base_model"))
    present = [a for a in adapters if Path(a.path).is_dir()]
    ctx = {
        "model": model,
        "served": served,
        "adapters": present,
        "missing": len(adapters) - len(present),
        "params": model.generation_params(),
    }
    return render(request, "training/playground.html", ctx)


def _visible_jobs(user):
    qs = TrainingJob.objects.select_related("base_model", "dataset", "adapter")
    return qs if user.is_staff else qs.filter(created_by=user)


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    return render(request, "training/job_list.html", {"jobs": _visible_jobs(request.user)[:200]})


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(_visible_jobs(request.user), pk=job_id)
    return render(request, "training/job_detail.html", {"job": job, "tracking": jobs.job_tracking(job)})


@staff_required
@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = jobs.training_job_cancel(job=get_object_or_404(TrainingJob, pk=job_id))
    messages.info(request, f"Job {job.pk}: {'cancel requested' if job.status == 'running' else job.status}.")
    return _back_to_job(request, job.pk)


def _back_to_job(request: HttpRequest, job_id: int) -> HttpResponse:
    """The job's page again: a redirect, or for htmx (the live controls) a full reload of it."""
    if request.htmx:
        return HttpResponse(headers={"HX-Redirect": reverse("training:job", args=[job_id])})
    return redirect("training:job", job_id=job_id)


@staff_required
@require_POST
def job_retry(request: HttpRequest, job_id: int) -> HttpResponse:
    try:
        jobs.training_job_retry(job=get_object_or_404(TrainingJob, pk=job_id))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return _back_to_job(request, job_id)


@staff_required
def fine_tune(request: HttpRequest) -> HttpResponse:
    initial = {"dataset": request.GET.get("dataset"), "preset": request.GET.get("preset")}
    form = FineTuneForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = jobs.training_job_create(
                base_model=data["base_model"],
                dataset=data["dataset"],
                parent_adapter=data["parent_adapter"],
                user=request.user,
                **form.settings(),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("training:job", job_id=job.pk)
    return render(request, "training/fine_tune.html", {"form": form, "presets": form.presets_for_script()})


@staff_required
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The dataset as a job will see it; the preview (tokenizer work) arrives as a second request."""
    dataset = get_object_or_404(TrainingDataset, pk=dataset_id)
    models = list(LanguageModel.objects.filter(enabled=True).exclude(backend=LanguageModel.Backend.OPENAI))
    chosen = str(request.GET.get("model", ""))
    model = next((m for m in models if str(m.pk) == chosen), None) or next(
        (m for m in models if m.is_default_student), models[0] if models else None
    )
    ctx = {"dataset": dataset, "models": models, "model": model}
    if request.GET.get("part") == "preview":
        try:
            ctx["preview"] = previews.dataset_preview_for(dataset=dataset, model=model) if model else None
        except Exception as exc:  # a model that cannot load: say so in the page, never a 500
            ctx["error"] = f"{model} could not read the dataset: {first_line(exc)}"
        return render(request, "training/partials/dataset_preview.html", ctx)
    return render(request, "training/dataset_detail.html", ctx)


@staff_required
def dataset_download(request: HttpRequest, dataset_id: int) -> StreamingHttpResponse:
    dataset = get_object_or_404(TrainingDataset, pk=dataset_id)
    response = StreamingHttpResponse(
        previews.dataset_jsonl(dataset=dataset), content_type="application/jsonl"
    )
    response["Content-Disposition"] = f'attachment; filename="dataset-{dataset.pk}-{dataset.method}.jsonl"'
    return response


@staff_required
def dataset_upload(request: HttpRequest) -> HttpResponse:
    form = DatasetUploadForm(request.POST or None, request.FILES or None)
    line_errors: list[tuple[int, str]] = []
    if request.method == "POST" and form.is_valid():
        try:
            dataset = jobs.dataset_create_from_jsonl(
                name=form.cleaned_data["name"],
                method=form.cleaned_data["method"],
                text=form.cleaned_data["file"],
                user=request.user,
                source=request.FILES["file"].name,
            )
        except DatasetError as exc:
            line_errors = exc.errors[:100]
            form.add_error("file", f"{len(exc.errors)} bad line(s); nothing was saved.")
        else:
            messages.success(request, f"Saved {dataset}.")
            return redirect("training:dataset", dataset_id=dataset.pk)
    return render(request, "training/dataset_upload.html", {"form": form, "line_errors": line_errors})


@staff_required
def adapter_list(request: HttpRequest) -> HttpResponse:
    """Every adapter, with its merge into the base and the served models it loads into."""
    adapters = Adapter.objects.select_related("base_model", "parent").all()
    return render(request, "training/adapter_list.html", {"rows": shipping.adapter_rows(adapters)})


@staff_required
def adapter_download(request: HttpRequest, adapter_id: int) -> HttpResponse:
    """The adapter's PEFT folder as a zip."""
    adapter = get_object_or_404(Adapter, pk=adapter_id)
    folder = Path(adapter.path)
    if not folder.is_dir():
        raise Http404(f"the files of {adapter} are gone from {folder}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(
                    path, Path(f"{adapter.base_model.name}-v{adapter.version}") / path.relative_to(folder)
                )
    buffer.seek(0)
    return FileResponse(
        buffer, as_attachment=True, filename=f"{adapter.base_model.name}-v{adapter.version}.zip"
    )
