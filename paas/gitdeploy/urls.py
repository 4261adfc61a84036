from django.urls import path, re_path

from paas.gitdeploy import pages, views

urlpatterns = [
    re_path(
        r"^git/(?P<name>[a-z0-9-]{1,63})\.git/(?P<endpoint>info/refs|git-upload-pack|git-receive-pack)$",
        views.git_endpoint,
        name="git-endpoint",
    ),
    path("hooks/git/<str:name>", views.webhook, name="git-webhook"),
    path("apps/<str:name>/git/", pages.app_git, name="app-git"),
]
