"""Register or update a teacher/student model from a terminal (scripts, compose stacks, CI)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from training import services
from training.models import LanguageModel

# Options copied onto the model field of the same name when given (None = leave as it is).
FIELD_OPTIONS = (
    "backend",
    "source",
    "base_url",
    "api_key_env",
    "temperature",
    "top_p",
    "max_new_tokens",
    "enabled",
    "token_limit_field",
    "send_sampling",
)
ROLE_OPTIONS = {"teacher": "is_teacher", "student": "is_student"}


def _errors(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = (
        "Create or update a language model in the registry by name: where it lives (a Hugging Face id or "
        "folder, a .gguf file, or an OpenAI-compatible server such as vLLM), its roles and whether it is the "
        "default teacher or student. Options left out keep their current value on an existing model. "
        "Example: register_model big-teacher --backend openai --base-url http://teacher:8000/v1 "
        "--source teacher --api-key-env TEACHER_API_KEY --teacher --default-teacher"
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Short unique name (a slug), e.g. qwen-7b-teacher.")
        parser.add_argument("--backend", choices=[choice.value for choice in LanguageModel.Backend])
        parser.add_argument(
            "--source",
            help="transformers: Hugging Face id or local folder; gguf: path to the "
            ".gguf file; openai: the model name the server serves.",
        )
        parser.add_argument(
            "--base-url", help="openai only: the server's base URL, e.g. http://teacher:8000/v1."
        )
        parser.add_argument(
            "--api-key-env",
            help="openai only: the NAME of the environment variable holding "
            "the API key (never the key itself).",
        )
        flag = argparse.BooleanOptionalAction
        parser.add_argument(
            "--teacher", action=flag, help="Give (or, with --no-teacher, take) the teacher role."
        )
        parser.add_argument("--student", action=flag, help="Give (or take) the student role.")
        parser.add_argument(
            "--default-teacher",
            action=flag,
            help="Make it the default teacher (implies --teacher; the previous default loses it).",
        )
        parser.add_argument(
            "--default-student", action=flag, help="Make it the default student (implies --student)."
        )
        parser.add_argument("--enabled", action=flag, help="Enable or disable the model.")
        parser.add_argument("--temperature", type=float, help="Sampling temperature (0 = greedy).")
        parser.add_argument("--top-p", type=float)
        parser.add_argument("--max-new-tokens", type=int)
        parser.add_argument(
            "--token-limit-field",
            choices=["max_tokens", "max_completion_tokens"],
            help="openai: the request field of the reply's length (max_completion_tokens for OpenAI's newest "
            "models; default max_tokens).",
        )
        parser.add_argument(
            "--send-sampling",
            action=flag,
            help="openai: send temperature and top_p (--no-send-sampling for models that refuse them).",
        )
        parser.add_argument(
            "--try",
            dest="try_it",
            action="store_true",
            help="Then generate a short sample and fail if the model cannot answer.",
        )

    def handle(self, *args, name: str, try_it: bool, **options: Any) -> None:
        model, created = self._save(name, options)
        verb = "Registered" if created else "Updated"
        defaults = [
            role
            for role, on in (
                ("default teacher", model.is_default_teacher),
                ("default student", model.is_default_student),
            )
            if on
        ]
        where = f"{model.base_url} serving {model.source}" if model.base_url else model.source
        self.stdout.write(
            f"{verb} {model.name} ({model.backend}; {', '.join(model.roles + defaults)}) at {where}"
        )
        if try_it:
            self._try(model)

    @transaction.atomic
    def _save(self, name: str, options: dict[str, Any]) -> tuple[LanguageModel, bool]:
        model = LanguageModel.objects.select_for_update().filter(name=name).first()
        created = model is None
        if model is None:
            if not options["source"]:
                raise CommandError(
                    f"{name} is not registered yet: give at least --source (and --backend "
                    "unless it is transformers)."
                )
            model = LanguageModel(name=name)
        for option in FIELD_OPTIONS:
            if options[option] is not None:
                setattr(model, option, options[option])
        for option, field in ROLE_OPTIONS.items():
            if options[option] is not None:
                setattr(model, field, options[option])
        make_default = {role: bool(options[f"default_{role}"]) for role in ROLE_OPTIONS}
        for role, field in ROLE_OPTIONS.items():
            if make_default[role]:
                if options[role] is False:
                    raise CommandError(f"--no-{role} contradicts --default-{role}.")
                setattr(model, field, True)
            elif options[f"default_{role}"] is False or not getattr(model, field):
                setattr(
                    model, f"is_default_{role}", False
                )  # a model without the role cannot stay its default
        try:
            # Constraints are checked after the defaults move below, not here: the old default
            # still holds the flag at this point.
            model.full_clean(validate_constraints=False)
        except ValidationError as exc:
            raise CommandError(f"{name}: {_errors(exc)}") from exc
        model.save()
        if any(make_default.values()):
            services.language_model_set_default(
                model=model, teacher=make_default["teacher"], student=make_default["student"]
            )
        return model, created

    def _try(self, model: LanguageModel) -> None:
        self.stdout.write(f"Trying {model.name}…")
        services.language_model_try(model=model)
        if model.last_try_error:
            raise CommandError(model.last_try_error)
        self.stdout.write(model.last_try_output)
