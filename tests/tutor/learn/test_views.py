"""Learner pages: what each role may reach, answering, ratings, the instructor view, the training button."""

from __future__ import annotations

import random

from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse

from tests.base import PASSWORD
from tests.tutor.learn.test_services import LearnerTestCase
from training.models import TrainingJob
from tutor.learn import services as learning
from tutor.models import LearnerAttempt, LearnerEnrolment, TutorFeedback, TutorMessage


class LearnViewsTestCase(LearnerTestCase):
    def setUp(self) -> None:
        super().setUp()
        User = get_user_model()
        self.carol = User.objects.create_user("carol", password=PASSWORD)  # another learner
        self.ian = User.objects.create_user("ian", password=PASSWORD, is_staff=True)  # instructor, staff
        self.course.instructors.add(self.ian)
        self.session = learning.tutoring_session_start(enrolment=self.enrolment, rng=random.Random(0))
        self.message = self.session.messages.get()
        learning.tutor_message_finish(
            message_id=self.message.pk, text="Add <b>ones</b> first.", status="done", source="model"
        )

    def urls(self) -> list[tuple[str, str]]:
        s, m = self.session.pk, self.message.pk
        return [
            ("get", reverse("learn:courses")),
            ("get", reverse("learn:course", args=["tiny"])),
            ("get", reverse("learn:session", args=[s])),
            ("post", reverse("learn:answer", args=[s])),
            ("post", reverse("learn:next", args=[s])),
            ("post", reverse("learn:solution", args=[s])),
            ("post", reverse("learn:feedback", args=[m])),
            ("get", reverse("learn:learners", args=["tiny"])),
            ("post", reverse("learn:train", args=["tiny"])),
        ]


class AccessTestCase(LearnViewsTestCase):
    def test_it_sends_anonymous_users_to_sign_in_everywhere(self):
        for method, url in self.urls():
            response = getattr(self.client, method)(url)
            self.assertEqual(response.status_code, 302, url)
            self.assertIn(reverse("login"), response["Location"])

    def test_it_hides_a_learners_session_answers_and_ratings_from_other_learners(self):
        self.client.login(username="carol", password=PASSWORD)
        s, m = self.session.pk, self.message.pk
        self.assertEqual(self.client.get(reverse("learn:session", args=[s])).status_code, 404)
        self.assertEqual(
            self.client.post(reverse("learn:answer", args=[s]), {"answer": "5"}).status_code, 404
        )
        self.assertEqual(self.client.post(reverse("learn:solution", args=[s])).status_code, 404)
        self.assertEqual(
            self.client.post(
                reverse("learn:feedback", args=[m]), {"kind": "helpful", "value": "helpful"}
            ).status_code,
            404,
        )
        self.assertEqual(self.client.get(reverse("learn:learners", args=["tiny"])).status_code, 404)
        self.assertFalse(LearnerAttempt.objects.exists())
        self.assertFalse(TutorFeedback.objects.exists())

    def test_it_shows_instructors_their_courses_learners_read_only(self):
        self.client.login(username="ian", password=PASSWORD)
        page = self.client.get(reverse("learn:learners", args=["tiny"]))
        self.assertContains(page, 'data-learner="bob"')
        transcript = self.client.get(reverse("learn:session", args=[self.session.pk]))
        self.assertContains(transcript, "(read only)")
        self.assertNotContains(transcript, "ws-connect")
        # Read only: an instructor cannot answer or rate in the learner's name.
        self.assertEqual(
            self.client.post(reverse("learn:answer", args=[self.session.pk]), {"answer": "5"}).status_code,
            404,
        )

    def test_it_hides_learners_from_instructors_of_other_courses(self):
        other = get_user_model().objects.create_user("olga", password=PASSWORD, is_staff=True)
        self.client.login(username="olga", password=PASSWORD)
        self.assertEqual(self.client.get(reverse("learn:learners", args=["tiny"])).status_code, 404)
        self.assertEqual(self.client.get(reverse("learn:session", args=[self.session.pk])).status_code, 404)
        self.assertEqual(
            self.client.post(reverse("learn:train", args=["tiny"]), {"method": "kto"}).status_code, 404
        )
        self.assertTrue(other.is_staff)


class SessionPageTestCase(LearnViewsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client.login(username="bob", password=PASSWORD)

    def test_it_shows_the_exercise_the_mastery_chart_and_the_socket_without_the_gold_answer(self):
        page = self.client.get(reverse("learn:session", args=[self.session.pk]))
        self.assertContains(page, "What is 2 + 3?")
        self.assertContains(page, 'data-skill="add" data-percent="20"')
        self.assertContains(page, f'ws-connect="/ws/learn/sessions/{self.session.pk}/"')
        self.assertContains(page, "Add &lt;b&gt;ones&lt;/b&gt; first.")  # model text, escaped
        self.assertNotContains(page, "2 + 3 = 5")

    def test_it_grades_an_answer_and_updates_the_chart_in_the_same_response(self):
        response = self.client.post(
            reverse("learn:answer", args=[self.session.pk]), {"answer": "5"}, HTTP_HX_REQUEST="true"
        )
        self.assertContains(response, 'data-correct="true"')
        self.assertContains(response, 'id="mastery-chart" class="mastery-chart" hx-swap-oob="true"')
        self.assertContains(response, 'data-skill="add" data-percent="60"')

    def test_it_keeps_a_wrong_answer_in_the_box(self):
        response = self.client.post(reverse("learn:answer", args=[self.session.pk]), {"answer": "6"})
        self.assertContains(response, 'data-correct="false"')
        self.assertContains(response, 'value="6"')
        self.assertEqual(self.session.messages.filter(kind="remediation").count(), 1)

    def test_it_refuses_an_empty_nul_only_or_over_long_answer_without_counting_it(self):
        url = reverse("learn:answer", args=[self.session.pk])
        for answer, said in (
            ("", "Type an answer first"),
            ("   ", "Type an answer first"),
            ("\x00\x00", "Null characters are not allowed"),
            ("9" * 2001, "at most 2000 characters"),
        ):
            response = self.client.post(url, {"answer": answer}, HTTP_HX_REQUEST="true")
            self.assertContains(response, said)
            self.assertContains(response, 'id="answer-form"')  # the card, ready for another try
        self.assertFalse(LearnerAttempt.objects.exists())
        self.assertFalse(self.session.messages.filter(kind="remediation").exists())
        page = self.client.get(reverse("learn:session", args=[self.session.pk]))
        self.assertContains(page, 'data-skill="add" data-percent="20"')  # mastery unchanged

    def test_it_saves_a_rating_and_replaces_an_earlier_one(self):
        url = reverse("learn:feedback", args=[self.message.pk])
        self.client.post(url, {"kind": "helpful", "value": "not_helpful"})
        response = self.client.post(url, {"kind": "helpful", "value": "helpful"})
        self.assertContains(response, "Thanks, saved.")
        self.assertEqual(list(TutorFeedback.objects.values_list("value", flat=True)), ["helpful"])
        self.assertEqual(self.client.post(url, {"kind": "helpful", "value": "meh"}).status_code, 400)

    def test_it_records_the_clearer_of_two_alternatives_and_updates_both(self):
        other = TutorMessage.objects.create(
            session=self.session,
            kind="explanation",
            skill=self.message.skill,
            prompt=self.message.prompt,
            alternative_to=self.message,
            text="Example: 2 + 3 = 5.",
            status="done",
            source="model",
        )
        page = self.client.get(reverse("learn:session", args=[self.session.pk]))
        self.assertContains(page, "This one is clearer", count=2)
        response = self.client.post(
            reverse("learn:feedback", args=[other.pk]), {"kind": "choice", "value": "chosen"}
        )
        self.assertContains(response, "You found this one clearer")
        self.assertContains(
            response, f'id="tmsg-{self.message.pk}-feedback" class="feedback" hx-swap-oob="true"'
        )
        choice = TutorFeedback.objects.get(kind="choice")
        self.assertEqual((choice.message, choice.rejected), (other, self.message))

    def test_it_shows_the_full_solution_as_a_tutor_message(self):
        self.client.post(reverse("learn:solution", args=[self.session.pk]))
        solution = self.session.messages.get(kind="solution")
        self.assertIn("2 + 3 = 5", solution.text)
        self.assertEqual(solution.source, "expert")  # the course's, labelled so, never the model's

    def test_it_shows_flash_messages_as_text_not_the_tutors_messages(self):
        self.client.post(reverse("learn:enrol", args=["tiny"]), {"level": "wizard"})  # flashes, redirects
        page = self.client.get(reverse("learn:session", args=[self.session.pk]))
        self.assertContains(page, '<p class="message error">Choose your level.</p>', html=True)
        self.assertNotContains(page, "TutorMessage")
        self.assertContains(page, "Add &lt;b&gt;ones&lt;/b&gt; first.")  # the transcript is still there

    def test_it_shows_the_courses_text_labelled_and_hides_why_the_model_failed(self):
        TutorMessage.objects.filter(pk=self.message.pk).update(
            text="Example: What is 4 + 4?\n4 + 4 = 8.\nAnswer: 8",
            source="expert",
            label="Worked example from the course",
            failed_check="the worked example's final answer is wrong (expected 8, got 120)",
            failed_text="The learner is a beginner: use plain words. The answer is: 120.",
        )
        page = self.client.get(reverse("learn:session", args=[self.session.pk]))
        self.assertContains(page, "Worked example from the course")
        self.assertContains(page, "not the tutor model")
        self.assertContains(page, "4 + 4 = 8")
        self.assertNotContains(page, "The answer is: 120")
        self.assertNotContains(page, "expected 8")
        self.assertNotContains(page, "use plain words")
        self.assertNotContains(page, "Was this helpful?")  # the course's text is not the model's to rate

        self.client.login(username="ian", password=PASSWORD)
        transcript = self.client.get(reverse("learn:session", args=[self.session.pk]))
        self.assertContains(transcript, "expected 8, got 120")
        self.assertContains(transcript, "The learner is a beginner: use plain words. The answer is: 120.")
        learners = self.client.get(reverse("learn:learners", args=["tiny"]))
        self.assertContains(learners, 'id="failed-checks"')
        self.assertContains(learners, "expected 8, got 120")
        self.assertContains(learners, "The answer is: 120.")

    def test_it_enrols_with_a_stated_level_and_opens_a_session(self):
        self.client.login(username="carol", password=PASSWORD)
        response = self.client.post(
            reverse("learn:enrol", args=["tiny"]), {"level": "advanced", "scaffolding": "on"}
        )
        enrolment = LearnerEnrolment.objects.get(user=self.carol)
        self.assertEqual((enrolment.level, enrolment.scaffolding), ("advanced", True))
        self.assertRedirects(response, reverse("learn:session", args=[enrolment.sessions.get().pk]))


class SignupTestCase(LearnViewsTestCase):
    def test_it_signs_up_a_learner_and_signs_them_in(self):
        response = self.client.post(
            reverse("learn:signup"),
            {"username": "dora", "password1": "a sturdy passphrase 9", "password2": "a sturdy passphrase 9"},
        )
        self.assertRedirects(response, reverse("learn:courses"))
        self.assertContains(self.client.get(reverse("learn:courses")), "Start learning")

    @override_settings(TEACHLOOP_OPEN_SIGNUP=False)
    def test_it_closes_sign_up_when_configured(self):
        self.assertEqual(self.client.get(reverse("learn:signup")).status_code, 404)


class TrainButtonTestCase(LearnViewsTestCase):
    def test_it_creates_a_dpo_job_from_pairwise_choices_for_staff_instructors(self):
        second = TutorMessage.objects.create(
            session=self.session,
            kind="explanation",
            skill=self.message.skill,
            prompt=self.message.prompt,
            alternative_to=self.message,
            text="Start with 2 + 3 = 5.",
            status="done",
            source="model",
        )
        learning.tutor_feedback_save(message=second, user=self.bob, kind="choice", value="chosen")
        self.client.login(username="ian", password=PASSWORD)
        self.assertContains(self.client.get(reverse("learn:course", args=["tiny"])), "Create training job")
        response = self.client.post(reverse("learn:train", args=["tiny"]), {"method": "dpo"})
        job = TrainingJob.objects.get()
        self.assertRedirects(response, reverse("training:job", args=[job.pk]), fetch_redirect_response=False)
        self.assertEqual((job.method, job.base_model, job.dataset.record_count), ("dpo", self.teacher, 1))

    def test_it_refuses_instructors_who_are_not_staff(self):
        self.course.instructors.add(self.carol)
        self.client.login(username="carol", password=PASSWORD)
        self.assertEqual(
            self.client.post(reverse("learn:train", args=["tiny"]), {"method": "kto"}).status_code, 404
        )
        self.assertNotContains(self.client.get(reverse("learn:course", args=["tiny"])), "Create training job")
        self.assertFalse(TrainingJob.objects.exists())
