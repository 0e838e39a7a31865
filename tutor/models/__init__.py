"""The tutor app's models, one module per room; re-exported so ``tutor.models.X`` keeps working."""

from tutor.models.courses import Course, Exercise, ExerciseQuerySet, Skill
from tutor.models.evals import Evaluation
from tutor.models.learners import (
    LearnerAttempt,
    LearnerEnrolment,
    LearnerSkillState,
    TutorFeedback,
    TutoringSession,
    TutorMessage,
)
from tutor.models.runs import Round, RunExplanation, TeachingRun

__all__ = [
    "Course",
    "Evaluation",
    "Exercise",
    "ExerciseQuerySet",
    "LearnerAttempt",
    "LearnerEnrolment",
    "LearnerSkillState",
    "Round",
    "RunExplanation",
    "Skill",
    "TeachingRun",
    "TutorFeedback",
    "TutorMessage",
    "TutoringSession",
]
