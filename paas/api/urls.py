from django.urls import path

from paas.api import domains, views

urlpatterns = [
    path("apps", views.apps, name="api-apps"),
    path("apps/<str:name>/builds", views.app_builds, name="api-app-builds"),
    path("builds/<str:build_id>", views.build_detail, name="api-build"),
    path("apps/<str:name>/domains", domains.app_domains, name="api-app-domains"),
    path("apps/<str:name>/domains/<str:hostname>", domains.app_domain, name="api-app-domain"),
    path(
        "apps/<str:name>/domains/<str:hostname>/certificate",
        domains.app_domain_certificate,
        name="api-app-domain-certificate",
    ),
]
