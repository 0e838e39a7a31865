"""Junk posted to every page, as a learner and as staff: a clear answer every time, never a 500.

Every URL of the site (the admin aside: Django's own) is asked with GET and POST, its ids filled
with real objects, its form fields (every form of the apps) set to each junk value in turn. The test
client raises the view's exception on a server error, so a failure names the view and the junk.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.base import BaseTestCase
from tests.tutor.learn.fixtures import make_course
from tests.tutor.runs.helpers import make_models_and_course, scripted_models
from tests.tutor.runs.test_views import DUMMY_TASKS
from training.forms import DatasetUploadForm, FineTuneForm
from training.models import Adapter, AdapterMerge, TrainingDataset, TrainingJob
from tutor.courses.forms import CourseUploadForm
from tutor.learn import services as learning
from tutor.learn.forms import AnswerForm, EnrolForm, FeedbackForm, SignupForm, TrainFromFeedbackForm
from tutor.models import Evaluation, LearnerAttempt, RunExplanation
from tutor.runs import services as teaching
from tutor.runs.forms import ExplanationEditForm, ResumeForm, TeachingRunForm

FORMS = [
    DatasetUploadForm,
    FineTuneForm,
    CourseUploadForm,
    SignupForm,
    EnrolForm,
    AnswerForm,
    FeedbackForm,
    TrainFromFeedbackForm,
    TeachingRunForm,
    ResumeForm,
    ExplanationEditForm,
]
FIELDS = sorted({name for form in FORMS for name in form.base_fields} | {"next", "page", "q"})
JUNK = [
    "",
    " ",
    "\x00",
    "-1",
    "0",
    "1e309",
    "9" * 40,
    "nan",
    "<script>alert(1)</script>",
    "x" * 100_000,
    "[" * 3000,
    '{"a": null}',
    "é" * 3000,
]


def url_names() -> list[tuple[str, list[str]]]:
    found = []

    def walk(resolver, namespace=None):
        for p in resolver.url_patterns:
            if isinstance(p, URLResolver):
                if p.namespace != "admin":
                    walk(p, p.namespace or namespace)
            elif isinstance(p, URLPattern) and p.name:
                found.append((f"{namespace}:{p.name}" if namespace else p.name, list(p.pattern.converters)))

    walk(get_resolver())
    return found


class FuzzTestCase(BaseTestCase):
    @pytest.fixture(autouse=True)
    def _fakes(self, monkeypatch, settings):
        scripted_models(monkeypatch)
        settings.TASKS = DUMMY_TASKS  # nothing junk might queue runs here

    def setUp(self) -> None:
        super().setUp()
        course, teacher, student, _ = make_models_and_course()
        run = teaching.teaching_run_create(
            course=course,
            student=student,
            teacher=teacher,
            user=self.alice,
            train={"disabled": True},
            rounds=1,
        )
        explanation = RunExplanation.objects.create(
            run=run, key="r0-x", round=0, item="i", skill="s", text="t"
        )
        tiny = make_course("tiny")
        enrolment = learning.learner_enrol(user=self.bob, course=tiny)
        session = learning.tutoring_session_start(enrolment=enrolment)
        attempt = LearnerAttempt.objects.create(session=session, exercise=session.exercise, answer="9")
        dataset = TrainingDataset.objects.create(
            name="d", method="sft", records=[], record_count=0, sha256="0" * 64
        )
        job = TrainingJob.objects.create(base_model=student, dataset=dataset, method="sft", config={})
        adapter = Adapter.objects.create(base_model=student, version=1, path="/nowhere", method="sft")
        merge = AdapterMerge.objects.create(adapter=adapter)  # queued: nothing to download
        evaluation = Evaluation.objects.create(student=student, split="exam", source="junk", total=1)
        self.ids = {
            "run_id": run.pk,
            "explanation_id": explanation.pk,
            "session_id": session.pk,
            "attempt_id": attempt.pk,
            "message_id": session.messages.first().pk,
            "job_id": job.pk,
            "adapter_id": adapter.pk,
            "merge_id": merge.pk,
            "evaluation_id": evaluation.pk,
            "model_id": student.pk,
            "dataset_id": dataset.pk,
            "course_key": "tiny",
        }

    def urls(self) -> list[str]:
        urls = []
        for name, params in url_names():
            if name == "logout":
                continue  # it signs the fuzzer out
            urls.append(reverse(name, kwargs={p: self.ids[p] for p in params}))
        return urls

    def test_no_junk_in_any_field_of_any_page_makes_a_server_error(self):
        for user in (self.bob, self.alice):
            self.client.force_login(user)
            for url in self.urls():
                for junk in JUNK:
                    for response in (
                        self.client.get(url, {"dataset": junk, "page": junk, "model": junk}),
                        self.client.get(url, {"part": "preview", "model": junk}),
                        self.client.post(url, dict.fromkeys(FIELDS, junk)),
                        self.client.post(url, dict.fromkeys(FIELDS, junk), HTTP_HX_REQUEST="true"),
                    ):
                        self.assertLess(response.status_code, 500, (user.username, url, junk[:20]))

    def test_junk_files_are_refused_with_a_message(self):
        self.client.force_login(self.alice)
        junk_files = (b"\xff\xfe\x00", b"[" * 200_000, b'{"messages": ' * 5000, b"", b"\x00" * 100)
        for content in junk_files:
            response = self.client.post(
                reverse("training:dataset-upload"),
                {"name": "junk", "method": "sft", "file": SimpleUploadedFile("junk.jsonl", content)},
            )
            self.assertEqual(response.status_code, 200, content[:10])  # the form again, with its error
            self.assertContains(response, 'class="errorlist', msg_prefix=repr(content[:10]))
            response = self.client.post(
                reverse("admin:tutor_course_import"),
                {"file": SimpleUploadedFile("junk.jsonl", content), "replace": "on"},
            )
            self.assertEqual(response.status_code, 200, content[:10])
            self.assertContains(response, "errorlist", msg_prefix=repr(content[:10]))
        self.assertFalse(TrainingDataset.objects.filter(name="junk").exists())
