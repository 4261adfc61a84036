from django.urls import path

from paas.api import domains, views

urlpatterns = [
    path("apps", views.apps, name="api-apps"),
    path("apps/<str:name>/builds", views.app_builds, name="api-app-builds"),
    path("apps/<str:name>/build-args", views.app_build_args, name="api-app-build-args"),
    path("apps/<str:name>/build-args/<str:arg>", views.app_build_arg, name="api-app-build-arg"),
    path("apps/<str:name>/build-secrets", views.app_build_secrets, name="api-app-build-secrets"),
    path(
        "apps/<str:name>/build-secrets/<str:secret>",
        views.app_build_secret,
        name="api-app-build-secret",
    ),
    path("builds/<str:build_id>", views.build_detail, name="api-build"),
    path("apps/<str:name>/domains", domains.app_domains, name="api-app-domains"),
    path("apps/<str:name>/domains/<str:hostname>", domains.app_domain, name="api-app-domain"),
    path(
        "apps/<str:name>/domains/<str:hostname>/certificate",
        domains.app_domain_certificate,
        name="api-app-domain-certificate",
    ),
    path("builds/<str:build_id>/cancel", views.build_cancel_view, name="api-build-cancel"),
]
