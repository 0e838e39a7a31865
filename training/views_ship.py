"""Shipping adapters from the Adapters page: merge into the base (background, then download), load
into a served model. The rules are in ``training/shipping.py``."""

from __future__ import annotations

from pathlib import Path

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from teachloop.auth import staff_required
from training import shipping
from training.models import Adapter, AdapterMerge, LanguageModel


def _back(adapter: Adapter) -> HttpResponse:
    return redirect(f"{reverse('training:adapters')}#adapter-{adapter.pk}")


@staff_required
@require_POST
def adapter_merge(request: HttpRequest, adapter_id: int) -> HttpResponse:
    adapter = get_object_or_404(Adapter.objects.select_related("base_model"), pk=adapter_id)
    try:
        merge, outcome = shipping.adapter_merge_request(adapter=adapter, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return _back(adapter)
    said = {
        "queued": f"Merging {adapter} into {adapter.base_model.name} in the background.",
        "active": f"{adapter} is already being merged ({merge.status}).",
        "reused": f"{adapter} is already merged and unchanged since: download it below.",
    }[outcome]
    messages.info(request, said)
    return _back(adapter)


@staff_required
def adapter_merge_state(request: HttpRequest, adapter_id: int) -> HttpResponse:
    """The adapter's merge cell (htmx polls it while a merge is queued or running)."""
    adapter = get_object_or_404(Adapter.objects.select_related("base_model"), pk=adapter_id)
    [row] = shipping.adapter_rows([adapter])
    return render(request, "training/partials/adapter_merge.html", {"row": row})


@staff_required
def adapter_merge_download(request: HttpRequest, merge_id: int) -> StreamingHttpResponse:
    """The merged folder as a zip, streamed (a model of many GB never sits in memory)."""
    merge = get_object_or_404(AdapterMerge.objects.select_related("adapter__base_model"), pk=merge_id)
    folder = Path(merge.out_dir)
    if merge.status != AdapterMerge.Status.SUCCEEDED or not (folder / "config.json").is_file():
        raise Http404(f"merge {merge.pk} has no merged model to download ({merge.status})")
    name = f"{merge.adapter.base_model.name}-v{merge.adapter.version}-merged"
    pieces = shipping.merged_zip(folder, name)
    # Served by daphne, Django would read a sync iterator whole into memory before sending it.
    content = shipping.in_thread(pieces) if isinstance(request, ASGIRequest) else pieces
    response = StreamingHttpResponse(content, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}.zip"'
    return response


@staff_required
@require_POST
def adapter_load(request: HttpRequest, adapter_id: int, model_id: int) -> HttpResponse:
    """Load the adapter into a served model (vLLM's runtime LoRA loading)."""
    adapter = get_object_or_404(Adapter.objects.select_related("base_model"), pk=adapter_id)
    served = get_object_or_404(LanguageModel, pk=model_id)
    try:
        name, reply = shipping.adapter_serve_load(adapter=adapter, served=served)
    except ValidationError as exc:
        messages.error(request, f"Loading {adapter} into {served.name} failed: {' '.join(exc.messages)}")
        return _back(adapter)
    messages.success(
        request,
        f"{served.name} serves {adapter} as model “{name}” ({reply}). Requests to {served.base_url} "
        f"for model {name} get the base with this adapter. To teach with it, register it: "
        f"{shipping.register_command(name=name, served=served)}",
    )
    return _back(adapter)
