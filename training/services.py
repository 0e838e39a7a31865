"""Model registry services (HackSoft style: keyword-only ``<entity>_<action>`` functions)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from training.core.bundled import BUNDLED_MODEL_NAME, bundled_gguf_path
from training.core.llm import LLM, LLMError
from training.core.llm.base import ModelSpec
from training.core.llm.registry import forget, get_llm
from training.models import LanguageModel

logger = logging.getLogger(__name__)

TRY_CONVERSATION = [{"role": "user", "content": "In two sentences, explain what a fraction is."}]
TRY_MAX_NEW_TOKENS = 48
MAX_STORED_OUTPUT = 4000  # model output is untrusted and unbounded: keep what we store sane


def language_model_llm(
    *, model: LanguageModel, progress: Callable[[str], None] | None = None, page: bool = False
) -> LLM:
    """The loaded (cached per process) backend for a registered model. ``page``: someone waits on a
    page for the reply, so a server model gives up sooner (``TEACHLOOP_PAGE_TIMEOUT_S``,
    ``TEACHLOOP_PAGE_RETRIES``); a local model is the same loaded object either way."""
    spec = _page_spec(model) if page else model.to_spec()
    return get_llm(spec, cache_dir=Path(settings.TEACHLOOP_MODEL_CACHE_DIR), progress=progress)


def _page_spec(model: LanguageModel) -> ModelSpec:
    spec = model.to_spec()
    if spec.backend != "openai":
        return spec
    return dataclasses.replace(
        spec, timeout_s=settings.TEACHLOOP_PAGE_TIMEOUT_S, max_retries=settings.TEACHLOOP_PAGE_RETRIES
    )


# Per loaded LLM object (weakly: a model reloaded after an admin save is a new object, and an id()
# could be reused by it), the (name, path) of the adapters loaded into it.
_loaded_adapters: weakref.WeakKeyDictionary[LLM, set[tuple[str, str]]] = weakref.WeakKeyDictionary()
_loading_adapters = threading.Lock()


def language_model_adapter_on(*, llm: LLM, name: str, path: str) -> str:
    """Load the adapter in folder ``path`` into ``llm`` under ``name`` unless it is there already;
    return ``name``. Blocks while it loads (reading the folder): call it outside the event loop."""
    with _loading_adapters:
        loaded = _loaded_adapters.setdefault(llm, set())
        if (name, path) not in loaded:
            llm.load_adapter(name, path)
            loaded.add((name, path))
    return name


def language_model_try(*, model: LanguageModel) -> LanguageModel:
    """Generate a short sample; store the text or a one-line error on the model. Never raises."""
    output, error = "", ""
    try:
        llm = language_model_llm(model=model)
        params = model.generation_params().replace(
            max_new_tokens=min(TRY_MAX_NEW_TOKENS, model.max_new_tokens)
        )
        output = llm.generate([TRY_CONVERSATION], params)[0].text.strip() or "(the model returned no text)"
    except LLMError as exc:
        error = str(exc)
    except Exception as exc:  # an unexpected failure: the admin still gets one line, the log the trace
        logger.exception("trying model %s failed", model.name)
        error = f"{model.name}: unexpected error: {type(exc).__name__}: {exc}"
    model.last_try_output = output[:MAX_STORED_OUTPUT]
    model.last_try_error = error[:MAX_STORED_OUTPUT]
    model.last_tried_at = timezone.now()
    model.save(update_fields=["last_try_output", "last_try_error", "last_tried_at", "updated_at"])
    return model


def language_model_forget(*, model: LanguageModel) -> None:
    """Drop the process's loaded copy (after an edit changes how the model loads)."""
    forget(model.to_spec())
    forget(_page_spec(model))  # a server model's copy for pages, if one was made


@transaction.atomic
def language_model_set_default(*, model: LanguageModel, teacher: bool = False, student: bool = False) -> None:
    """Make ``model`` the default teacher and/or student, clearing the previous default."""
    if teacher:
        LanguageModel.objects.filter(is_default_teacher=True).exclude(pk=model.pk).update(
            is_default_teacher=False
        )
        model.is_teacher = model.is_default_teacher = True
    if student:
        LanguageModel.objects.filter(is_default_student=True).exclude(pk=model.pk).update(
            is_default_student=False
        )
        model.is_student = model.is_default_student = True
    model.save()


@transaction.atomic
def language_model_register_bundled(*, make_default: bool = True) -> tuple[LanguageModel, bool]:
    """Register (or refresh the path of) the bundled SmolLM2-135M-Instruct as teacher and student.

    It becomes the default teacher/student only where no other default exists, so
    re-running bootstrap never overrides a choice an admin made.
    """
    path = bundled_gguf_path()
    model, created = LanguageModel.objects.get_or_create(
        name=BUNDLED_MODEL_NAME,
        defaults={
            "backend": LanguageModel.Backend.GGUF,
            "source": str(path),
            "is_teacher": True,
            "is_student": True,
            "max_new_tokens": 256,
            "temperature": 0.0,
        },
    )
    if model.source != str(path):  # the venv moved or the package was reinstalled elsewhere
        model.source = str(path)
        model.save(update_fields=["source", "updated_at"])
    if make_default:
        language_model_set_default(
            model=model,
            teacher=not LanguageModel.objects.filter(is_default_teacher=True).exists(),
            student=not LanguageModel.objects.filter(is_default_student=True).exists(),
        )
    return model, created


def default_model(*, role: str) -> LanguageModel | None:
    """The enabled default model for ``role`` ("teacher" or "student"), or None."""
    return default_models()[role]


def default_models(*, models: list[LanguageModel] | None = None) -> dict[str, LanguageModel | None]:
    """The enabled default teacher and student (the first in the model's ordering), in one query; or,
    from ``models`` (every registered model, in that ordering, read anyway), in none."""
    if models is None:
        models = list(
            LanguageModel.objects.filter(
                Q(is_default_teacher=True) | Q(is_default_student=True), enabled=True
            )
        )
    enabled = [m for m in models if m.enabled]
    return {
        "teacher": next((m for m in enabled if m.is_default_teacher), None),
        "student": next((m for m in enabled if m.is_default_student), None),
    }
