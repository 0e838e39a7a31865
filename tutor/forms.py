from __future__ import annotations

from django import forms


class CourseUploadForm(forms.Form):
    file = forms.FileField(help_text="Course JSONL: a course line, skill lines, exercise lines.")
    replace = forms.BooleanField(required=False, help_text="Replace a course with the same key.")

    MAX_BYTES = 20 * 1024 * 1024

    def clean_file(self) -> str:
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError("The file is larger than 20 MB.")
        try:
            return upload.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(f"The file is not UTF-8 text (byte {exc.start}).") from exc
