"""Register the bundled default model, pre-convert it, and make sure an admin can sign in."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from training import services
from training.core.bundled import BundledModelMissing


class Command(BaseCommand):
    help = (
        "Register the bundled SmolLM2-135M-Instruct as the default teacher and student, convert its "
        "GGUF file to a cached safetensors copy (slow once, ~1 min; seconds afterwards), and create "
        "an admin account whose password is printed once. Safe to run again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--admin-username", default="admin", help="Username of the admin created if none exists."
        )
        parser.add_argument("--no-admin", action="store_true", help="Do not create an admin account.")
        parser.add_argument(
            "--skip-convert",
            action="store_true",
            help="Register only; convert the GGUF on first use instead.",
        )

    def handle(self, *args, admin_username: str, no_admin: bool, skip_convert: bool, **options) -> None:
        try:
            model, created = services.language_model_register_bundled()
        except BundledModelMissing as exc:
            raise CommandError(str(exc)) from exc
        verb = "Registered" if created else "Found"
        self.stdout.write(f"{verb} {model.name} ({', '.join(model.roles)}) at {model.source}")

        if not skip_convert:
            from training.core.llm.local import ensure_gguf_cache

            started = time.monotonic()
            folder = ensure_gguf_cache(
                Path(model.source),
                Path(settings.TEACHLOOP_MODEL_CACHE_DIR),
                progress=lambda message: self.stdout.write(f"  {message}"),
            )
            self.stdout.write(f"Model cache ready at {folder} ({time.monotonic() - started:.1f} s)")

        if not no_admin:
            self._ensure_admin(admin_username)
        self.stdout.write(
            "Next: `manage.py import_course --pack arithmetic` (a course with its own expert, which checks "
            "and completes what the small bundled teacher writes), then "
            "`manage.py teach --course arithmetic`."
        )

    def _ensure_admin(self, username: str) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                "An admin account exists already (reset a password with "
                "`python manage.py changepassword <username>`)."
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created admin account '{username}' with password: {password}\n"
                "  (shown once; change it with `python manage.py changepassword "
                f"{username}`)"
            )
        )
