"""Fill the live server's database for the browser tests (run in a subprocess: ``python -m tests.e2e.seed``;
it migrates first).

The browser tests talk to a separate daphne process on its own SQLite file, so their data is
created here, through the same services the app uses.
"""

from __future__ import annotations

import argparse
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teachloop.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from tests.tutor.learn.fixtures import make_course  # noqa: E402
from training.models import LanguageModel  # noqa: E402
from training.services import language_model_register_bundled, language_model_set_default  # noqa: E402

PASSWORD = "correct horse battery staple"
LEARNERS = ["lena", "liam", "lucy", "leo", "lara", "lily", "luke"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher-url", help="base URL of an OpenAI-compatible fake teacher")
    parser.add_argument("--bundled", action="store_true", help="teach with the bundled SmolLM2")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument(
        "--tiny-student",
        help="folder of the tiny test model: register it as a student and "
        "import the mini course (teaching-run pages)",
    )
    args = parser.parse_args()
    call_command("migrate", "--noinput", verbosity=0)  # here, not in another process: one Django start less
    User = get_user_model()
    for name in LEARNERS:
        User.objects.create_user(name, password=PASSWORD)
    ivan = User.objects.create_user("ivan", password=PASSWORD, is_staff=True)
    course = make_course()
    course.instructors.add(ivan)
    if args.bundled:
        teacher, _ = language_model_register_bundled()
    else:
        teacher = LanguageModel.objects.create(
            name="fake-teacher",
            is_teacher=True,
            backend="openai",
            source="fake-model",
            base_url=args.teacher_url,
        )
        language_model_set_default(model=teacher, teacher=True)
    teacher.max_new_tokens = args.max_new_tokens
    teacher.save()
    if args.tiny_student:
        from tests.tutor.core.runs.fakes import mini_course
        from tutor.courses import services

        LanguageModel.objects.create(name="tiny", is_student=True, source=args.tiny_student, max_new_tokens=8)
        services.course_save(course=mini_course(train=2, probe=2, exam=2))


if __name__ == "__main__":
    main()
