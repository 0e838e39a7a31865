from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.core.exceptions import PermissionDenied
from django.urls import include, path


class LoginView(auth_views.LoginView):
    """Django's sign-in page, offering learner sign-up only where it is open."""

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "open_signup": settings.TEACHLOOP_OPEN_SIGNUP}


_admin_login = admin.site.login


def _admin_login_for_staff(request, extra_context=None):
    """A signed-in learner asking for the admin gets the same 403 page as on every staff page, not
    the admin's sign-in form saying "not authorized"."""
    if request.user.is_authenticated and not request.user.is_staff:
        raise PermissionDenied("This page is for staff.")
    return _admin_login(request, extra_context)


admin.site.login = _admin_login_for_staff  # type: ignore[method-assign]


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
handler500 = "teachloop.views.server_error"
