"""Importing courses: packs, JSONL (command and admin upload) and BIG-bench files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from tests.base import BaseTestCase
from tests.paths import BIGBENCH_DIR
from training.models import LanguageModel
from tutor.core.courses.formats import course_to_jsonl
from tutor.core.courses.packs import load_pack
from tutor.courses import services
from tutor.models import Course, Exercise, LearnerEnrolment, Skill, TeachingRun

BIGBENCH = BIGBENCH_DIR / "valid_parentheses.json"


def import_course(*args: str) -> str:
    out = io.StringIO()
    call_command("import_course", *args, stdout=out)
    return out.getvalue()


class ImportPackTestCase(BaseTestCase):
    def test_it_imports_the_arithmetic_pack_with_prerequisites(self):
        output = import_course("--pack", "arithmetic")
        course = Course.objects.get(key="arithmetic")
        self.assertIn("Imported arithmetic", output)
        div = Skill.objects.get(course=course, key="div_remainder")
        self.assertEqual(sorted(div.prerequisites.values_list("key", flat=True)), ["mul_1d", "sub_2d"])
        self.assertTrue(Exercise.objects.filter(skill__course=course, split="exam").exists())

    def test_it_round_trips_a_stored_course_to_the_core(self):
        pack = load_pack("counting", seed=3)
        row = services.course_save(course=pack, source="test")
        self.assertEqual(services.course_to_core(course=row), pack)

    def test_it_never_offers_exam_items_for_training(self):
        import_course("--pack", "counting")
        trainable = Exercise.objects.filter(skill__course__key="counting").trainable()
        self.assertTrue(trainable.exists())
        self.assertFalse(trainable.filter(split="exam").exists())

    def test_it_refuses_to_overwrite_a_course_unless_asked(self):
        import_course("--pack", "counting")
        with self.assertRaisesMessage(CommandError, "exists already"):
            import_course("--pack", "counting")
        output = import_course("--pack", "counting", "--seed", "1", "--replace")
        self.assertEqual(Course.objects.filter(key="counting").count(), 1)
        self.assertNotIn("enrolment", output)

    def test_it_says_which_learner_enrolments_a_replace_deleted(self):
        import_course("--pack", "counting")
        LearnerEnrolment.objects.create(user=self.bob, course=Course.objects.get(key="counting"))
        output = import_course("--pack", "counting", "--seed", "1", "--replace")
        self.assertIn("the course it replaced had 1 learner enrolment, deleted with their sessions", output)
        self.assertFalse(LearnerEnrolment.objects.exists())


class ReplaceTaughtCourseTestCase(BaseTestCase):
    """A course with teaching runs is never replaced: the runs' rounds and explanations name its items."""

    def setUp(self) -> None:
        super().setUp()
        import_course("--pack", "counting")
        self.course = Course.objects.get(key="counting")
        model = LanguageModel.objects.create(name="m", source="x")
        TeachingRun.objects.create(course=self.course, student=model, teacher=model, config={"rounds": 1})
        self.exercises = list(Exercise.objects.filter(skill__course=self.course).values_list("pk", "prompt"))

    def assert_untouched(self) -> None:
        course = Course.objects.get(key="counting")
        self.assertEqual((course.pk, course.source), (self.course.pk, self.course.source))
        self.assertEqual(
            list(Exercise.objects.filter(skill__course=course).values_list("pk", "prompt")), self.exercises
        )

    def test_it_refuses_to_replace_it_from_the_command(self):
        with self.assertRaisesMessage(CommandError, "course 'counting' has 1 teaching run (#"):
            import_course("--pack", "counting", "--seed", "1", "--replace")
        self.assert_untouched()

    def test_it_refuses_to_replace_it_from_the_admin_upload(self):
        upload = io.BytesIO(course_to_jsonl(load_pack("counting", seed=1)).encode())
        upload.name = "counting.jsonl"
        self.client.force_login(self.alice)
        response = self.client.post(reverse("admin:tutor_course_import"), {"file": upload, "replace": "on"})
        self.assertEqual(response.status_code, 200)
        self.assertIn("has 1 teaching run", " ".join(response.context["form"].errors["replace"]))
        self.assertContains(response, "Import it under a new key, or delete the runs first.")
        self.assert_untouched()


class ImportJsonlTestCase(BaseTestCase):
    def good_jsonl(self) -> str:
        return course_to_jsonl(load_pack("counting", seed=0))

    def test_it_lists_bad_lines_and_imports_nothing(self):
        lines = self.good_jsonl().splitlines()
        lines[3] = "{broken"
        lines.append(
            json.dumps(
                {
                    "type": "exercise",
                    "key": "x1",
                    "skill": "nope",
                    "prompt": "p",
                    "answer": "1",
                    "answer_type": "number",
                    "split": "train",
                }
            )
        )
        upload = io.BytesIO("\n".join(lines).encode())
        upload.name = "bad.jsonl"
        self.client.force_login(self.alice)
        response = self.client.post(reverse("admin:tutor_course_import"), {"file": upload})
        self.assertContains(response, "bad line(s); nothing was imported")
        reported = [line for line, _ in response.context["line_errors"]]
        self.assertIn(4, reported)
        self.assertIn(len(lines), reported)
        self.assertFalse(Course.objects.exists())

    def test_it_imports_an_uploaded_course(self):
        upload = io.BytesIO(self.good_jsonl().encode())
        upload.name = "counting.jsonl"
        self.client.force_login(self.alice)
        response = self.client.post(reverse("admin:tutor_course_import"), {"file": upload})
        self.assertRedirects(response, reverse("admin:tutor_course_changelist"))
        self.assertTrue(Course.objects.filter(key="counting").exists())

    def test_it_keeps_learners_out_of_course_import(self):
        self.client.force_login(self.bob)
        response = self.client.get(reverse("admin:tutor_course_import"))
        self.assertEqual(response.status_code, 302)

    def test_it_reports_the_line_of_a_bad_file_from_the_command(self):
        path = Path(self.alice.username + "-bad-course.jsonl")
        try:
            path.write_text(self.good_jsonl() + "\nnot json\n")
            with self.assertRaisesMessage(CommandError, "nothing was imported"):
                import_course("--file", str(path))
        finally:
            path.unlink(missing_ok=True)
        self.assertFalse(Course.objects.exists())


@pytest.mark.skipif(not BIGBENCH.is_file(), reason="shared BIG-bench extract not present")
class ImportBigbenchTestCase(BaseTestCase):
    def test_it_imports_an_external_multiple_choice_task(self):
        import_course("--bigbench", str(BIGBENCH), "--key", "parens")
        exercises = Exercise.objects.filter(skill__course__key="parens")
        self.assertEqual(exercises.count(), 1000)
        self.assertEqual(set(exercises.values_list("answer_type", flat=True)), {"choice"})
        self.assertTrue(exercises.filter(split="exam").count() > 0)
