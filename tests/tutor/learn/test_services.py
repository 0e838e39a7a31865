"""Learner-side services: sessions, grading, mastery and reviews, remediation queueing, feedback records."""

from __future__ import annotations

import random
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from tests.base import BaseTestCase
from tests.tutor.learn.fixtures import ScriptedLLM, make_course
from training import services as training_services
from training.core.llm import GenerationError
from training.models import LanguageModel, TrainingJob
from tutor.learn import selectors
from tutor.learn import services as learning
from tutor.models import Exercise, LearnerSkillState, Skill, TutorFeedback, TutorMessage


class LearnerTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.course = make_course()
        self.teacher = LanguageModel.objects.create(
            name="teach", is_teacher=True, is_default_teacher=True, source="x"
        )
        self.enrolment = learning.learner_enrol(user=self.bob, course=self.course, level="intermediate")

    def start(self):
        return learning.tutoring_session_start(enrolment=self.enrolment, rng=random.Random(0))

    def use_teacher(self, llm: ScriptedLLM) -> ScriptedLLM:
        original = training_services.language_model_llm
        training_services.language_model_llm = lambda model, **_: llm
        self.addCleanup(setattr, training_services, "language_model_llm", original)
        return llm


class SessionTestCase(LearnerTestCase):
    def test_it_starts_with_the_first_unlocked_skill_and_queues_a_tailored_explanation(self):
        session = self.start()
        self.assertEqual(session.exercise.key, "add-1")  # unsolved, easiest first
        self.assertEqual(session.reason, "new")
        explanation = session.messages.get()
        self.assertEqual((explanation.kind, explanation.status), ("explanation", "pending"))
        self.assertIn("intermediate learner", explanation.prompt[-1]["content"])
        self.assertIn("Adding", explanation.prompt[-1]["content"])

    @override_settings(TEACHLOOP_TUTOR_ALTERNATIVES_SHARE=1.0)
    def test_it_queues_two_alternatives_when_the_share_says_so(self):
        session = self.start()
        first, second = session.messages.order_by("pk")
        self.assertEqual(second.alternative_to, first)
        self.assertEqual(first.partner, second)
        self.assertEqual(second.partner, first)

    def test_it_never_puts_an_exam_item_on_the_screen(self):
        session = self.start()
        seen = set()
        for _ in range(6):
            learning.learner_attempt_submit(session=session, answer="0")
            session = learning.tutoring_session_next(session=session, rng=random.Random(1))
            seen.add(session.exercise.split)
        self.assertNotIn("exam", seen)

    def test_next_exercise_never_repeats_the_one_on_screen_and_skipping_walks_through_them_all(self):
        add = self.course.skills.get(key="add")
        items = {e.key: e for e in Exercise.objects.filter(skill=add)}
        walk, current = [], None
        for _ in range(4):
            current = learning._pick_exercise(enrolment=self.enrolment, skill=add, current=current)
            walk.append(current.key)
        self.assertEqual(walk, ["add-1", "add-2", "add-3", "add-1"])  # easiest first, then on, wrapping
        session = self.start()
        learning.learner_attempt_submit(session=session, answer="0")  # add-1, wrong: tried once
        picked = learning._pick_exercise(enrolment=self.enrolment, skill=add, current=items["add-1"])
        self.assertEqual(picked.key, "add-3")  # not add-1 again; add-2 was the explanation's worked example

    @override_settings(
        TEACHLOOP_LEARNER_GENERATIONS_PER_MINUTE=3, TEACHLOOP_LEARNER_CONCURRENT_GENERATIONS=99
    )
    def test_a_learner_gets_so_many_teacher_replies_a_minute_then_notes_until_the_minute_is_over(self):
        session = self.start()  # its explanation is the first of the minute
        for _ in range(3):
            learning.learner_attempt_submit(session=session, answer="0")
        replies = list(session.messages.filter(kind="remediation").order_by("pk"))
        self.assertEqual(
            [m.source for m in replies], ["", "", "note"]
        )  # two for the teacher (unwritten), a note
        self.assertEqual(replies[-1].status, "done")
        self.assertIn("the limit is 3", replies[-1].text)
        with self.assertRaisesMessage(ValidationError, "the limit is 3"):
            learning.tutor_question_ask(session=session, question="Why?")
        TutorMessage.objects.update(created_at=timezone.now() - timedelta(minutes=2))  # a minute later
        self.assertEqual(learning.tutor_question_ask(session=session, question="Why?").status, "pending")

    @override_settings(TEACHLOOP_LEARNER_CONCURRENT_GENERATIONS=1)
    def test_a_learner_waits_for_the_reply_being_written_before_asking_again(self):
        session = self.start()  # its explanation is pending
        with self.assertRaisesMessage(ValidationError, "still writing 1 of your replies"):
            learning.tutor_question_ask(session=session, question="Why?")
        TutorMessage.objects.update(status="failed")
        failed = session.messages.get()
        self.assertTrue(learning.tutor_message_retry(message=failed))  # nothing else is being written
        with self.assertRaisesMessage(ValidationError, "still writing"):
            learning.tutor_question_ask(session=session, question="Why?")

    def test_it_does_not_explain_a_skill_twice(self):
        session = self.start()
        learning.tutoring_session_next(session=session, rng=random.Random(0))
        self.assertEqual(TutorMessage.objects.filter(kind="explanation").count(), 1)


class GradingTestCase(LearnerTestCase):
    def test_it_grades_a_right_answer_and_raises_mastery(self):
        session = self.start()
        attempt = learning.learner_attempt_submit(session=session, answer="It is 5")
        self.assertTrue(attempt.correct)
        state = LearnerSkillState.objects.get(enrolment=self.enrolment, skill__key="add")
        self.assertAlmostEqual(state.p_known, 0.6)  # BKT default, by hand in test_mastery
        self.assertEqual(attempt.p_known_after, state.p_known)
        self.assertFalse(session.messages.filter(kind="remediation").exists())

    def test_it_queues_a_remediation_after_a_wrong_answer(self):
        session = self.start()
        attempt = learning.learner_attempt_submit(session=session, answer="6")
        self.assertFalse(attempt.correct)
        remediation = session.messages.get(kind="remediation")
        self.assertEqual((remediation.attempt, remediation.status), (attempt, "pending"))
        self.assertLess(LearnerSkillState.objects.get(skill__key="add").p_known, 0.2)

    def test_it_uses_the_skills_own_knowledge_tracing_parameters(self):
        Skill.objects.filter(key="add").update(bkt_params={"prior": 0.5, "learn": 0.0})
        session = self.start()
        learning.learner_attempt_submit(session=session, answer="5")
        # posterior = 0.5*0.9 / (0.5*0.9 + 0.5*0.2) = 0.45/0.55
        self.assertAlmostEqual(LearnerSkillState.objects.get(skill__key="add").p_known, 0.45 / 0.55)

    def test_it_schedules_a_review_days_later_once_a_skill_is_mastered(self):
        session = self.start()
        for _ in range(5):
            learning.learner_attempt_submit(session=session, answer="5")
        state = LearnerSkillState.objects.get(skill__key="add")
        self.assertGreaterEqual(state.p_known, 0.95)
        self.assertIsNotNone(state.mastered_at)
        self.assertGreater(state.review_due, timezone.now() + timedelta(hours=12))
        self.assertEqual(selectors.learner_reviews_due(enrolment=self.enrolment), [])
        later = state.review_due + timedelta(minutes=1)
        self.assertEqual(
            [s.skill.key for s in selectors.learner_reviews_due(enrolment=self.enrolment, now=later)], ["add"]
        )

    def test_it_does_not_count_an_answer_copied_from_the_shown_solution(self):
        session = self.start()
        learning.tutor_solution_show(session=session)
        attempt = learning.learner_attempt_submit(session=session, answer="5")
        self.assertTrue(attempt.correct)
        self.assertFalse(LearnerSkillState.objects.filter(skill__key="add").exists())

    def _text_session(self):
        session = self.start()
        session.exercise = Exercise.objects.get(key="cap-1")
        session.save()
        return session

    def test_it_asks_the_teacher_to_grade_a_free_text_answer_the_rule_rejects(self):
        llm = self.use_teacher(ScriptedLLM(decision="Paris is meant.\nVerdict: correct"))
        attempt = learning.learner_attempt_submit(
            session=self._text_session(), answer="It's the city of Paris!"
        )
        self.assertTrue(attempt.correct)
        self.assertEqual(attempt.graded_by, "teacher")
        self.assertIn("Correct answer: Paris", llm.calls[0][1][-1]["content"])

    def test_it_keeps_the_answer_ungraded_when_the_teacher_is_down_and_grades_it_on_retry(self):
        llm = self.use_teacher(ScriptedLLM(error=GenerationError("teach", "server said 503")))
        session = self._text_session()
        attempt = learning.learner_attempt_submit(session=session, answer="Lyon")
        attempt.refresh_from_db()
        self.assertEqual((attempt.answer, attempt.correct), ("Lyon", None))
        self.assertIn("could not answer", attempt.grade_error)
        self.assertFalse(LearnerSkillState.objects.exists())
        llm.error, llm.decision = None, "Verdict: incorrect"
        attempt = learning.learner_attempt_grade(attempt=attempt)
        self.assertIs(attempt.correct, False)
        self.assertEqual(attempt.grade_error, "")
        self.assertTrue(session.messages.filter(kind="remediation", attempt=attempt).exists())


class FeedbackRecordsTestCase(LearnerTestCase):
    def done(self, message: TutorMessage, text: str) -> TutorMessage:
        learning.tutor_message_finish(message_id=message.pk, text=text, status="done", source="model")
        message.refresh_from_db()
        return message

    @override_settings(TEACHLOOP_TUTOR_ALTERNATIVES_SHARE=1.0)
    def test_it_turns_a_pairwise_choice_into_a_dpo_pair_with_one_prompt(self):
        session = self.start()
        a, b = [
            self.done(m, text)
            for m, text in zip(session.messages.order_by("pk"), ["Plain.", "Example first."], strict=True)
        ]
        learning.tutor_feedback_save(message=b, user=self.bob, kind="choice", value="chosen")
        learning.tutor_feedback_save(
            message=a, user=self.bob, kind="choice", value="chosen"
        )  # changed their mind
        records = selectors.tutoring_preference_records(course=self.course, method="dpo")
        self.assertEqual(len(records), 1)
        self.assertEqual(records[0]["chosen"], [{"role": "assistant", "content": "Plain."}])
        self.assertEqual(records[0]["rejected"], [{"role": "assistant", "content": "Example first."}])
        self.assertEqual(records[0]["prompt"], a.prompt)

    def test_it_turns_thumbs_into_kto_records(self):
        session = self.start()
        message = self.done(session.messages.get(), "Add the ones.")
        learning.tutor_feedback_save(message=message, user=self.bob, kind="helpful", value="not_helpful")
        learning.tutor_feedback_save(message=message, user=self.bob, kind="difficulty", value="too_hard")
        [record] = selectors.tutoring_preference_records(course=self.course, method="kto")
        self.assertIs(record["label"], False)
        # The learner said "too hard": the next prompt asks the teacher to go slower.
        self.assertEqual(selectors.learner_context(enrolment=self.enrolment).difficulty_feedback, "too_hard")

    def test_it_refuses_to_rate_an_unfinished_reply(self):
        session = self.start()
        with self.assertRaises(ValidationError):
            learning.tutor_feedback_save(
                message=session.messages.get(), user=self.bob, kind="helpful", value="helpful"
            )

    def test_it_creates_a_kto_job_for_the_teachers_adapter(self):
        session = self.start()
        message = self.done(session.messages.get(), "Add the ones.")
        learning.tutor_feedback_save(message=message, user=self.bob, kind="helpful", value="helpful")
        job = learning.tutoring_training_job_create(course=self.course, method="kto", user=self.alice)
        self.assertEqual((job.base_model, job.method, job.dataset.record_count), (self.teacher, "kto", 1))
        self.assertTrue(job.dataset.records[0]["label"])
        with self.assertRaisesMessage(ValidationError, "No pairwise choices"):
            learning.tutoring_training_job_create(course=self.course, method="dpo", user=self.alice)
        self.assertEqual(TrainingJob.objects.count(), 1)
        self.assertEqual(TutorFeedback.objects.count(), 1)
