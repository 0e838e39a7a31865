from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("", include("tutor.urls")),
    path("training/", include("training.urls")),
    path("learn/", include("tutor.learn.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

admin.site.site_header = "TeachLoop administration"
admin.site.site_title = "TeachLoop admin"
