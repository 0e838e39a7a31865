from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path


class LoginView(auth_views.LoginView):
    """Django's sign-in page, offering learner sign-up only where it is open."""

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "open_signup": settings.TEACHLOOP_OPEN_SIGNUP}


urlpatterns = [
    path("", include("tutor.urls")),
    path("training/", include("training.urls")),
    path("learn/", include("tutor.learn.urls")),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

admin.site.site_header = "TeachLoop administration"
admin.site.site_title = "TeachLoop admin"
