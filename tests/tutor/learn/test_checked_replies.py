"""What the tutor model writes is checked before a learner reads it; what fails is replaced by the
course's own text, labelled, with the failure kept for instructors (issue 15)."""

from __future__ import annotations

import random

from django.core.exceptions import ValidationError
from django.test import override_settings

from tests.tutor.learn.fixtures import make_bare_course, make_pack_course
from tests.tutor.learn.test_services import LearnerTestCase
from tutor.learn import live, selectors
from tutor.learn import services as learning
from tutor.models import Exercise, TutorFeedback, TutorMessage

HINT_DECISION = "Error type: procedural\nStrategy: hint\nIntention: see that the ones carry a ten"


class CheckedReplyTestCase(LearnerTestCase):
    def write(self, message: TutorMessage, text: str, decision: str = HINT_DECISION) -> TutorMessage:
        """The generator's path without the socket: claim, decide (a mistake), then check the whole text."""
        plan = learning.tutor_message_claim(message_id=message.pk)
        self.assertIsNotNone(plan)
        if plan.conversation is None:
            learning.tutor_message_decide(plan=plan, text=decision)
        learning.tutor_message_vet(message_id=message.pk, text=text)
        message.refresh_from_db()
        return message

    def enrol(self, course, *, scaffolding: bool = True):
        enrolment = learning.learner_enrol(user=self.bob, course=course, scaffolding=scaffolding)
        return learning.tutoring_session_start(enrolment=enrolment, rng=random.Random(0))


class ExplanationTestCase(CheckedReplyTestCase):
    def test_it_explains_through_another_item_of_the_skill_never_the_learners_exercise(self):
        session = self.start()
        explanation = session.messages.get()
        self.assertEqual(session.exercise.key, "add-1")  # What is 2 + 3?
        prompt = explanation.prompt[-1]["content"]
        self.assertIn("Worked example: What is 4 + 4?", prompt)
        self.assertIn('"Answer: 8"', prompt)
        self.assertNotIn("2 + 3", prompt)
        self.assertEqual(explanation.checked_against["example"]["key"], "add-2")

    def test_it_has_the_packs_expert_write_an_example_when_the_course_holds_no_other(self):
        course = make_pack_course()
        Exercise.objects.filter(skill__course=course, key="sum-2").delete()
        explanation = self.enrol(course).messages.get()
        example = explanation.checked_against["example"]
        self.assertEqual(
            (explanation.status, example["skill"], example["split"]), ("pending", "add_2d", "train")
        )
        self.assertNotIn(
            example["prompt"], {"What is 47 + 38?", "What is 55 + 29?"}
        )  # not on screen, not exam
        self.assertNotEqual(example["answer"], "85")
        self.assertIn(example["prompt"], explanation.prompt[-1]["content"])

    def test_it_puts_an_item_shown_solved_as_an_example_after_the_others(self):
        session = self.start()
        learning.learner_attempt_submit(session=session, answer="5")
        # add-2 is easier than add-3, but the explanation showed it solved.
        picked = learning._pick_exercise(enrolment=self.enrolment, skill=session.exercise.skill)
        self.assertEqual(picked.key, "add-3")

    def test_it_shows_an_explanation_that_passes_its_checks_as_the_tutors_own(self):
        explanation = self.write(self.start().messages.get(), "Add the ones: 4 + 4 = 8.\nAnswer: 8")
        self.assertEqual((explanation.source, explanation.label), ("model", ""))
        self.assertEqual(explanation.text, "Add the ones: 4 + 4 = 8.\nAnswer: 8")
        self.assertEqual((explanation.failed_check, explanation.failed_text), ("", ""))

    def test_it_replaces_an_explanation_that_echoes_its_instructions_with_the_courses_example(self):
        echo = "The learner is an intermediate learner: be brief and precise. 4 + 4 = 8. Answer: 8"
        with self.assertLogs("tutor.learn.services", "WARNING") as logs:
            explanation = self.write(self.start().messages.get(), echo)
        self.assertEqual(explanation.source, "expert")
        self.assertEqual(explanation.label, "Worked example from the course")
        self.assertEqual(explanation.text, "Example: What is 4 + 4?\n4 + 4 = 8.\nAnswer: 8")
        self.assertIn("repeats its instructions", explanation.failed_check)
        self.assertEqual(explanation.failed_text, echo)
        self.assertIn("failed its checks", logs.output[0])

    def test_it_replaces_an_explanation_with_a_wrong_final_answer(self):
        explanation = self.write(self.start().messages.get(), "Four and four. The answer is: 120.")
        self.assertEqual(explanation.source, "expert")
        self.assertIn("final answer is wrong", explanation.failed_check)
        self.assertNotIn("120", explanation.text)

    def test_it_replaces_an_explanation_that_gives_away_the_learners_answer(self):
        text = "4 + 4 = 8, and your exercise 2 + 3 = 5.\nAnswer: 8"
        explanation = self.write(self.start().messages.get(), text)
        self.assertEqual(explanation.source, "expert")
        self.assertIn("gives away", explanation.failed_check)

    def test_it_shows_no_unchecked_text_for_a_course_without_an_expert(self):
        session = self.enrol(make_bare_course())
        explanation = self.write(session.messages.get(), "The learner is a beginner: use plain words. 120")
        self.assertEqual(explanation.source, "note")
        self.assertIn("No checked explanation is available", explanation.text)
        self.assertNotIn("120", explanation.text)
        # Without an expert the gold answer still checks one: a right explanation is shown.
        other = self.enrol(make_bare_course("bare-2")).messages.get()
        self.assertEqual(self.write(other, "4 + 4 = 8.\nAnswer: 8").source, "model")

    def test_it_asks_no_teacher_for_a_skill_without_another_item_to_teach_through(self):
        session = self.start()
        session.exercise = Exercise.objects.get(key="cap-1")  # the only item of its skill
        session.save()
        [note] = learning.tutor_explanation_queue(session=session, skill=session.exercise.skill)
        self.assertEqual((note.status, note.source), ("done", "note"))
        self.assertIn("No checked explanation is available", note.text)
        self.assertNotIn(note.pk, learning.tutor_messages_pending(session_id=session.pk))

    @override_settings(TEACHLOOP_TUTOR_ALTERNATIVES_SHARE=1.0)
    def test_it_offers_no_choice_between_a_pair_when_one_failed_its_checks(self):
        first, second = self.start().messages.order_by("pk")
        first = self.write(first, "Add the ones: 4 + 4 = 8.\nAnswer: 8")
        second = self.write(second, "Your strategy: 4 + 4 = 9.\nAnswer: 9")
        self.assertEqual((first.source, second.source), ("model", "note"))
        self.assertIn("did not pass its checks", second.text)
        self.assertFalse(live.tutor_message_context(message=first)["pair"])
        self.assertFalse(live.tutor_message_context(message=second)["pair"])
        with self.assertRaises(ValidationError):
            learning.tutor_feedback_save(message=first, user=self.bob, kind="choice", value="chosen")
        self.assertFalse(TutorFeedback.objects.exists())

    @override_settings(TEACHLOOP_TUTOR_ALTERNATIVES_SHARE=1.0)
    def test_it_offers_the_choice_when_both_of_a_pair_passed(self):
        first, second = self.start().messages.order_by("pk")
        first = self.write(first, "Add the ones: 4 + 4 = 8.\nAnswer: 8")
        second = self.write(second, "Count on four from four: 4 + 4 = 8. Adding is counting on.\nAnswer: 8")
        self.assertEqual((first.source, second.source), ("model", "model"))
        context = live.tutor_message_context(message=second)
        self.assertTrue(context["pair"])
        self.assertEqual(context["label"], "Explanation B")
        learning.tutor_feedback_save(message=second, user=self.bob, kind="choice", value="chosen")
        [record] = selectors.tutoring_preference_records(course=self.course, method="dpo")
        self.assertEqual(record["chosen"][0]["content"], second.text)


class RemediationTestCase(CheckedReplyTestCase):
    def mistake(self, session, answer: str = "75") -> TutorMessage:
        learning.learner_attempt_submit(session=session, answer=answer)
        return session.messages.filter(kind="remediation").last()

    def test_it_replaces_a_hint_that_gives_the_answer_away_with_the_courses_first_step(self):
        session = self.enrol(make_pack_course())
        self.assertEqual(session.exercise.prompt, "What is 47 + 38?")
        reply = self.write(self.mistake(session), "Carry the ten: 7 + 8 = 15, so 47 + 38 = 85.")
        self.assertEqual((reply.source, reply.label), ("expert", "Hint from the course"))
        self.assertEqual(reply.text, "Ones: 7 + 8 = 15, write 5, carry 1.")
        self.assertIn("gives away", reply.failed_check)

    def test_it_keeps_a_hint_that_leads_without_telling(self):
        session = self.enrol(make_pack_course())
        hint = "Look at the ones: 7 + 8 = 15. What do you carry?"
        reply = self.write(self.mistake(session), hint)
        self.assertEqual((reply.source, reply.text), ("model", hint))

    def test_it_replaces_a_hint_with_a_wrong_step(self):
        session = self.enrol(make_pack_course())
        reply = self.write(self.mistake(session), "Look at the ones: 7 + 8 = 14. What do you carry?")
        self.assertEqual(reply.source, "expert")
        self.assertIn("a step is wrong", reply.failed_check)

    def test_it_never_reads_the_decision_back(self):
        session = self.enrol(make_pack_course())
        read_back = "Strategy: hint\nIntention: see that the ones carry a ten"
        reply = self.write(self.mistake(session), read_back)
        self.assertEqual(reply.source, "expert")
        self.assertNotIn("Strategy", reply.text)
        self.assertEqual(reply.failed_text, read_back)

    def test_it_checks_a_worked_example_against_the_similar_item(self):
        session = self.enrol(make_pack_course())
        decision = "Error type: procedural\nStrategy: worked_example\nIntention: carry the ten"
        reply = self.write(self.mistake(session), "26 + 17: 6 + 7 = 13, carry 1.\nAnswer: 43", decision)
        self.assertEqual(reply.checked_against["example"]["prompt"], "What is 26 + 17?")
        self.assertIn("What is 26 + 17?", reply.prompt[-1]["content"])
        self.assertEqual(reply.source, "model")

        wrong = self.write(self.mistake(session, "74"), "26 + 17 = 33.\nAnswer: 33", decision)
        self.assertEqual((wrong.source, wrong.label), ("expert", "Worked example from the course"))
        self.assertTrue(wrong.text.startswith("Example: What is 26 + 17?"))

    def test_it_solves_the_learners_exercise_without_scaffolding_or_shows_the_courses_solution(self):
        session = self.enrol(make_pack_course(), scaffolding=False)
        reply = self.write(self.mistake(session), "47 + 38 = 85, you forgot the carry.\nAnswer: 85")
        self.assertEqual(reply.source, "model")
        self.assertIn('"Answer: 85"', reply.prompt[-1]["content"])
        wrong = self.write(self.mistake(session, "76"), "You forgot the carry.\nAnswer: 86")
        self.assertEqual((wrong.source, wrong.label), ("expert", "Worked solution from the course"))
        self.assertTrue(wrong.text.endswith("So 47 + 38 = 85.\nAnswer: 85"))


class QuestionTestCase(CheckedReplyTestCase):
    def test_it_replaces_an_answer_with_a_wrong_step_by_a_hint_from_the_course(self):
        session = self.enrol(make_pack_course())
        message = learning.tutor_question_ask(session=session, question="Why do we carry?")
        answer = self.write(message, "Because 7 + 8 = 16 is more than ten.")
        self.assertEqual((answer.source, answer.label), ("expert", "Hint from the course"))
        self.assertIn("a step is wrong", answer.failed_check)
        good = learning.tutor_question_ask(session=session, question="Why do we carry?")
        self.assertEqual(self.write(good, "Because 7 + 8 = 15 is more than ten.").source, "model")


class PreferenceTestCase(CheckedReplyTestCase):
    def test_it_trains_only_on_the_models_replies_that_passed_their_checks(self):
        session = self.start()
        passed = self.write(session.messages.get(), "Add the ones: 4 + 4 = 8.\nAnswer: 8")
        learning.tutor_question_ask(session=session, question="Why?")
        failed = self.write(session.messages.get(kind="answer"), "The answer is 5.")
        self.assertEqual(failed.source, "expert")
        learning.tutor_feedback_save(message=passed, user=self.bob, kind="helpful", value="helpful")
        with self.assertRaises(ValidationError):  # the course's text is not the model's to rate
            learning.tutor_feedback_save(message=failed, user=self.bob, kind="helpful", value="helpful")
        # Ratings stored by other paths (an older version, the admin) are no training data either.
        TutorFeedback.objects.create(message=failed, user=self.bob, kind="helpful", value="not_helpful")
        TutorFeedback.objects.create(
            message=passed, user=self.bob, kind="choice", value="chosen", rejected=failed
        )
        unchecked = TutorMessage.objects.create(
            session=session, kind="answer", prompt=passed.prompt, text="Unchecked.", status="done"
        )
        TutorFeedback.objects.create(message=unchecked, user=self.bob, kind="helpful", value="helpful")
        kto = selectors.tutoring_preference_records(course=self.course, method="kto")
        self.assertEqual([r["completion"][0]["content"] for r in kto], [passed.text])
        self.assertEqual(selectors.tutoring_preference_records(course=self.course, method="dpo"), [])
