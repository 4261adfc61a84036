from django.urls import path

from paas.api import views

urlpatterns = [
    path("apps", views.apps, name="api-apps"),
    path("apps/<str:name>/builds", views.app_builds, name="api-app-builds"),
    path("builds/<str:build_id>", views.build_detail, name="api-build"),
]
