from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from paas.builds.registry_realm import registry_token
from paas.front import activity, deploy_views, domains, hosts, teams, views
from paas.front.signin import AdminSignInForm, SignInForm

# The admin's sign-in goes through the same throttle as the panel's.
admin.site.login_form = AdminSignInForm

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(authentication_form=SignInForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tokens/", views.tokens, name="tokens"),
    path("teams/", teams.team_list, name="teams"),
    path("teams/<int:team_id>/", teams.team_detail, name="team-detail"),
    path("teams/<int:team_id>/members/<str:action>", teams.team_action, name="team-action"),
    path("teams/<int:team_id>/activity/", activity.team_activity, name="team-activity"),
    path("hosts/", hosts.hosts, name="hosts"),
    path("apps/new", views.app_new, name="app-new"),
    path("apps/<str:name>/", views.app_detail, name="app-detail"),
    path("apps/<str:name>/builds", views.build_upload, name="build-upload"),
    path("apps/<str:name>/build-settings", views.build_settings, name="build-settings"),
    path("apps/<str:name>/builds/<str:build_id>/", views.build_detail, name="build-detail"),
    path("apps/<str:name>/domains/", domains.app_domains, name="app-domains"),
    path("apps/<str:name>/activity/", activity.app_activity, name="app-activity"),
    path(
        "apps/<str:name>/builds/<str:build_id>/cancel",
        views.build_cancel_page,
        name="build-cancel",
    ),
    path(
        "apps/<str:name>/deploy/<str:action>",
        deploy_views.app_deploy_action,
        name="app-deploy-action",
    ),
    path("", include("paas.logs.urls")),
    path("", include("paas.metrics.urls")),
    path("", include("paas.gitdeploy.urls")),
    # The API (api/v1/) is in paas/urls_api.py only, here: see there.
    path("registry/token", registry_token, name="registry-token"),
    path("admin/", admin.site.urls),
]
