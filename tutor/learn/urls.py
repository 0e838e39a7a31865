"""Learner-side URLs, mounted at /learn/ (namespace ``learn``)."""

from django.urls import path

from tutor.learn import views

app_name = "learn"
urlpatterns = [
    path("", views.course_list, name="courses"),
    path("signup/", views.signup, name="signup"),
    path("courses/<slug:course_key>/", views.course_detail, name="course"),
    path("courses/<slug:course_key>/enrol/", views.course_enrol, name="enrol"),
    path("courses/<slug:course_key>/sessions/new/", views.session_new, name="session-new"),
    path("courses/<slug:course_key>/learners/", views.course_learners, name="learners"),
    path("courses/<slug:course_key>/train/", views.course_train, name="train"),
    path("sessions/<int:session_id>/", views.session_detail, name="session"),
    path("sessions/<int:session_id>/answer/", views.session_answer, name="answer"),
    path("sessions/<int:session_id>/next/", views.session_next, name="next"),
    path("sessions/<int:session_id>/solution/", views.session_solution, name="solution"),
    path("attempts/<int:attempt_id>/regrade/", views.attempt_regrade, name="regrade"),
    path("messages/<int:message_id>/feedback/", views.message_feedback, name="feedback"),
]
