from __future__ import annotations

from django import forms

from training.forms import read_text_upload


class CourseUploadForm(forms.Form):
    file = forms.FileField(help_text="Course JSONL: a course line, skill lines, exercise lines.")
    replace = forms.BooleanField(
        required=False,
        help_text=(
            "Replace a course with the same key; its learners' enrolments, sessions and mastery are deleted "
            "with it. Refused when the course has teaching runs."
        ),
    )

    def clean_file(self) -> str:
        return read_text_upload(self.cleaned_data["file"], max_mb=20)
