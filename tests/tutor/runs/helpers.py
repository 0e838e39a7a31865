"""Shared set-up of the teaching-run web tests (no tests here): registered models answered by
scripted fakes, and the mini course."""

from __future__ import annotations

from tests.tutor.core.runs.fakes import ScriptedLLM, add_items, mini_course, student_reply, teacher_reply
from training.models import LanguageModel
from tutor.courses import services
from tutor.models import Course
from tutor.runs import services as teaching


def scripted_models(monkeypatch, *, real_student: str | None = None) -> dict[str, ScriptedLLM]:
    """Route the registry's models named "scripted-teacher"/"scripted-student" to scripted fakes;
    any other model (the tiny real student) loads for real."""
    fakes = {
        "scripted-teacher": ScriptedLLM("scripted-teacher", teacher_reply(generate=add_items)),
        # It can score (a local model can): multiple choice by likelihood picks the shortest reply.
        "scripted-student": ScriptedLLM(
            "scripted-student", student_reply(), score=lambda kind, question, reply, adapter: -len(reply)
        ),
    }
    real = teaching.language_model_llm
    monkeypatch.setattr(
        teaching,
        "language_model_llm",
        lambda model, **_: fakes[model.name] if model.name in fakes else real(model=model),
    )
    return fakes


def make_models_and_course(
    tiny_model_dir=None,
) -> tuple[Course, LanguageModel, LanguageModel, LanguageModel | None]:
    teacher = LanguageModel.objects.create(
        name="scripted-teacher",
        is_teacher=True,
        backend="openai",
        source="m",
        base_url="http://127.0.0.1:9/v1",
    )
    student = LanguageModel.objects.create(name="scripted-student", is_student=True, source="unused")
    tiny = (
        LanguageModel.objects.create(
            name="tiny", is_student=True, source=str(tiny_model_dir), max_new_tokens=16
        )
        if tiny_model_dir is not None
        else None
    )
    course = services.course_save(course=mini_course(train=2, probe=2, exam=2))
    return course, teacher, student, tiny


def form_data(course, student, teacher, /, **overrides) -> dict:
    data = {
        "course": course.pk,
        "student": student.pk,
        "teacher": teacher.pk,
        "rounds": 1,
        "plan": "adaptive",
        "plan_budget": 4,
        "explain_budget": 2,
        "generate_budget": 1,
        "generate_k": 2,
        "seed": 0,
        "expert": "on",
        "train": "on",
        "max_steps": 2,
        "learning_rate": 0.005,
        "lora_r": 4,
        "batch_size": 2,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}
