"""Forms of the learner side (validation only)."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from tutor.models import LearnerEnrolment, TutorFeedback


class SignupForm(UserCreationForm):
    """A username and a password; the stated level is given per course, when enrolling."""


class EnrolForm(forms.Form):
    level = forms.ChoiceField(choices=LearnerEnrolment.Level.choices, initial=LearnerEnrolment.Level.BEGINNER)
    scaffolding = forms.BooleanField(
        required=False, initial=True, label="Hints and guiding questions before answers"
    )


class AnswerForm(forms.Form):
    answer = forms.CharField(max_length=2000, required=False, strip=True)


class FeedbackForm(forms.Form):
    kind = forms.ChoiceField(choices=TutorFeedback.Kind.choices)
    value = forms.CharField(max_length=12)

    def clean(self):
        data = super().clean()
        kind, value = data.get("kind"), data.get("value")
        if kind and value not in TutorFeedback.VALUES[kind]:
            raise forms.ValidationError("Unknown rating.")
        return data


class TrainFromFeedbackForm(forms.Form):
    method = forms.ChoiceField(
        choices=[("dpo", "DPO: pairwise choices"), ("kto", "KTO: helpful / not helpful")]
    )
