from django.apps import AppConfig


class TutorConfig(AppConfig):
    name = "tutor"
    verbose_name = "Tutoring"
    default_auto_field = "django.db.models.BigAutoField"
