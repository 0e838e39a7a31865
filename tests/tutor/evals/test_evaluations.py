"""Stored evaluations from the web: checks when made, the worker's run with progress, stored columns
reused, cancel and recovery, the comparison page (regressions marked, model text escaped), access."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from tests.base import PASSWORD, BaseTestCase
from tests.tutor.core.runs.fakes import ScriptedLLM, student_reply
from tests.tutor.runs.helpers import make_models_and_course
from tests.tutor.runs.test_views import DUMMY_TASKS
from training.models import Adapter, LanguageModel
from tutor.evals import services
from tutor.models import Evaluation


def _adapter_folder(tmp_path, name: str) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    return str(folder)


class EvaluationsTestCase(BaseTestCase):
    @pytest.fixture(autouse=True)
    def _fakes(self, monkeypatch, tmp_path, settings):
        # The base gets every item wrong (unless base_knows); adapters get them right, except one whose
        # folder is named "bad": it writes markup and a wrong answer.
        self.base_knows = False

        def knows(question, adapter):
            return self.base_knows if adapter is None else "bad" not in adapter

        self.llm = ScriptedLLM("scripted-student", student_reply(knows=knows))
        self.calls = 0
        real = self.llm.generate

        def counted(conversations, params=None, *, adapter=None):
            self.calls += 1
            if adapter == f"eval-adapter-{self.bad_pk}":
                return [
                    dataclasses.replace(g, text="<script>alert(1)</script>\nAnswer: 0")
                    for g in real(conversations, params)
                ]
            return real(conversations, params, adapter=adapter)

        self.llm.generate = counted  # type: ignore[method-assign]
        monkeypatch.setattr(services, "language_model_llm", lambda model, **_: self.llm)
        self.tmp_path, self.settings, self.bad_pk = tmp_path, settings, None

    def setUp(self) -> None:
        super().setUp()
        self.course, _, self.student, _ = make_models_and_course()
        self.good = Adapter.objects.create(
            base_model=self.student, version=1, path=_adapter_folder(self.tmp_path, "good"), method="sft"
        )

    def evaluate(self, adapters, **kwargs) -> Evaluation:
        with self.captureOnCommitCallbacks(execute=True):
            evaluation = services.evaluation_create(
                student=self.student, adapters=adapters, course=self.course, split="exam", **kwargs
            )
        evaluation.refresh_from_db()
        return evaluation

    def test_it_answers_every_column_and_marks_a_gain_beyond_noise(self):
        evaluation = self.evaluate([self.good])
        assert evaluation.status == Evaluation.Status.SUCCEEDED, evaluation.last_error
        assert evaluation.done == evaluation.total == 2 * len(evaluation.items)
        assert evaluation.results["labels"] == ["base", f"v1 (#{self.good.pk})"]
        rows = {r["skill"]: r for r in evaluation.results["rows"]}
        base, good = rows["all"]["cells"]
        assert (base["accuracy"], good["accuracy"]) == (0.0, 1.0)
        assert good["gained"] == len(evaluation.items) and good["lost"] == 0 and good["mark"] == 1
        assert 0 < good["low"] < 1 and good["high"] == pytest.approx(1.0)
        assert self.llm.loaded == [(f"eval-adapter-{self.good.pk}", self.good.path)]

    def test_a_column_answered_before_is_reused_not_recomputed(self):
        self.evaluate([self.good])
        calls = self.calls
        again = self.evaluate([self.good])
        assert again.status == Evaluation.Status.SUCCEEDED
        assert self.calls == calls  # both columns came from the first evaluation
        assert again.results["rows"] == Evaluation.objects.order_by("pk").first().results["rows"]
        # Another token limit is another column: asked again.
        self.evaluate([self.good], max_new_tokens=64)
        assert self.calls > calls

    def test_bad_input_is_refused_with_a_clear_message_and_nothing_is_queued(self):
        other = LanguageModel.objects.create(name="other", is_student=True, source="/x")
        foreign = Adapter.objects.create(base_model=other, version=1, path=self.good.path, method="sft")
        gone = Adapter.objects.create(base_model=self.student, version=3, path="/nowhere", method="sft")
        served = LanguageModel.objects.get(name="scripted-teacher")
        cases = [
            ({"adapters": [foreign]}, "was trained on other, not scripted-student"),
            ({"adapters": [gone]}, "no adapter folder at /nowhere"),
            ({"split": "keep"}, "has no items in the exam items of the keep skills"),
            ({"split": "upload", "upload": "  \n"}, "The uploaded file is empty"),
            ({"split": "upload", "upload": '{"prompt": "x"}\nnot json'}, "line 1: missing field(s) answer"),
            ({"student": served, "adapters": [self.good]}, "is served over HTTP"),
        ]
        for overrides, said in cases:
            kwargs = {
                "student": self.student,
                "adapters": [],
                "course": self.course,
                "split": "exam",
                **overrides,
            }
            with pytest.raises(ValidationError) as caught:
                services.evaluation_create(**kwargs)
            assert said in " ".join(caught.value.messages), (overrides, caught.value.messages)
        assert not Evaluation.objects.exists()

    def test_uploaded_held_out_items_are_evaluated(self):
        text = (
            '{"prompt": "What is 2 + 3?", "answer": 5, "skill": "add"}\n'
            '{"prompt": "What is 4 + 4?", "answer": 8}\n'
        )
        with self.captureOnCommitCallbacks(execute=True):
            evaluation = services.evaluation_create(
                student=self.student,
                adapters=[self.good],
                course=None,
                split="upload",
                upload=text,
                upload_name="mine.jsonl",
            )
        evaluation.refresh_from_db()
        assert evaluation.status == Evaluation.Status.SUCCEEDED, evaluation.last_error
        assert evaluation.source == "uploaded items (mine.jsonl, 2)"
        assert [r["skill"] for r in evaluation.results["rows"]] == ["add", "uploaded", "all"]

    def test_cancel_and_recovery(self):
        self.settings.TASKS = DUMMY_TASKS
        with self.captureOnCommitCallbacks(execute=True):
            queued = services.evaluation_create(
                student=self.student, adapters=[], course=self.course, split="exam"
            )
        assert services.evaluation_cancel(evaluation=queued).status == Evaluation.Status.CANCELLED
        assert services.evaluation_work(evaluation_id=queued.pk) == "skipped"
        stale = timezone.now() - timedelta(hours=1)
        dead = Evaluation.objects.create(
            student=self.student, split="exam", status="running", heartbeat_at=stale, lease="x", attempts=1
        )
        spent = Evaluation.objects.create(
            student=self.student, split="exam", status="running", heartbeat_at=stale, lease="y", attempts=3
        )
        alive = Evaluation.objects.create(
            student=self.student, split="exam", status="running", heartbeat_at=timezone.now(), lease="z"
        )
        assert sorted(services.evaluations_recover()) == sorted([dead.pk, spent.pk])
        statuses = dict(Evaluation.objects.values_list("pk", "status"))
        assert (statuses[dead.pk], statuses[spent.pk], statuses[alive.pk]) == ("queued", "failed", "running")

    def test_an_attempt_that_lost_its_lease_writes_nothing(self):
        self.settings.TASKS = DUMMY_TASKS
        with self.captureOnCommitCallbacks(execute=True):
            evaluation = services.evaluation_create(
                student=self.student, adapters=[self.good], course=self.course, split="exam"
            )
        real = self.llm.generate

        def steal(conversations, params=None, *, adapter=None):
            Evaluation.objects.filter(pk=evaluation.pk).update(lease="someone else")
            return real(conversations, params, adapter=adapter)

        self.llm.generate = steal  # type: ignore[method-assign]
        assert services.evaluation_work(evaluation_id=evaluation.pk) == "lost"
        evaluation.refresh_from_db()
        assert evaluation.status == "running" and evaluation.results == {}

    # --- pages ------------------------------------------------------------------------------

    def test_pages_are_for_staff_only(self):
        evaluation = self.evaluate([])
        urls = [reverse("evals:list"), reverse("evals:new"), reverse("evals:detail", args=[evaluation.pk])]
        for url in urls:
            assert self.client.get(url).status_code == 302  # to sign in
        self.client.login(username="bob", password=PASSWORD)
        for url in urls:
            assert self.client.get(url).status_code == 403
        assert self.client.post(reverse("evals:cancel", args=[evaluation.pk])).status_code == 403

    def test_the_form_starts_from_an_adapter_and_queues_a_comparison(self):
        self.client.login(username="alice", password=PASSWORD)
        page = self.client.get(reverse("evals:new") + f"?adapter={self.good.pk}").content.decode()
        boxes = re.findall(r'<input type="checkbox" name="adapters"[^>]*>', page)
        assert [("checked" in box, f'value="{self.good.pk}"' in box) for box in boxes] == [(True, True)]
        assert re.search(rf'<option value="{self.student.pk}" selected>', page)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                reverse("evals:new"),
                {
                    "student": self.student.pk,
                    "adapters": [self.good.pk],
                    "course": self.course.pk,
                    "split": "exam",
                    "max_new_tokens": 128,
                },
            )
        evaluation = Evaluation.objects.get()
        assert response.status_code == 302 and response["Location"] == reverse(
            "evals:detail", args=[evaluation.pk]
        )
        page = self.client.get(response["Location"]).content.decode()
        assert "Succeeded" in page and "100.0%" in page and "▲" in page

    def test_the_form_shows_what_is_wrong_and_queues_nothing(self):
        self.client.login(username="alice", password=PASSWORD)
        response = self.client.post(
            reverse("evals:new"),
            {"student": self.student.pk, "course": self.course.pk, "split": "keep", "max_new_tokens": 128},
        )
        assert response.status_code == 200
        assert "has no items in the exam items of the keep skills" in response.content.decode()
        response = self.client.post(
            reverse("evals:new"), {"student": self.student.pk, "split": "upload", "max_new_tokens": 128}
        )
        assert "Choose a file to upload" in response.content.decode()
        assert not Evaluation.objects.exists()

    def test_a_regression_is_marked_red_and_model_text_is_escaped(self):
        self.base_knows = True
        bad = Adapter.objects.create(
            base_model=self.student, version=2, path=_adapter_folder(self.tmp_path, "v2"), method="sft"
        )
        self.bad_pk = bad.pk
        evaluation = self.evaluate([self.good, bad])
        cells = {r["skill"]: r["cells"] for r in evaluation.results["rows"]}["all"]
        assert [c.get("mark") for c in cells] == [None, 0, -1]
        self.client.login(username="alice", password=PASSWORD)
        page = self.client.get(reverse("evals:detail", args=[evaluation.pk])).content.decode()
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the lost items, shown as written
        assert f"What v2 (#{bad.pk}) changed" in page and "Lost: right before" in page
        assert 'class="worse"' in page and "▼" in page


@pytest.mark.django_db(transaction=True)
async def test_the_live_socket_sends_the_state_to_staff_and_refuses_others(django_user_model):
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import AnonymousUser

    from teachloop.routing import websocket_urlpatterns

    student = await LanguageModel.objects.acreate(name="st", is_student=True, source="/x")
    evaluation = await Evaluation.objects.acreate(student=student, split="exam", source="c: exam", total=4)
    staff = await django_user_model.objects.acreate(username="s", is_staff=True)
    learner = await django_user_model.objects.acreate(username="l")
    for user, allowed in ((AnonymousUser(), False), (learner, False), (staff, True)):
        socket = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/tutor/evaluations/{evaluation.pk}/"
        )
        socket.scope["user"] = user
        connected, _ = await socket.connect()
        assert connected is allowed
        if allowed:
            html = await socket.receive_from()
            assert 'id="evaluation-state"' in html and "0 / 4 answers" in html
        await socket.disconnect()
