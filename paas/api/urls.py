from django.urls import path

from paas.api import deploy_views, domains, views

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

# Deploys (paas/api/deploy_views.py).
urlpatterns += [
    path("hosts/join", deploy_views.hosts_join, name="api-hosts-join"),
    path("apps/<str:name>/releases", deploy_views.app_releases, name="api-app-releases"),
    path(
        "apps/<str:name>/releases/<int:number>/rollback",
        deploy_views.app_rollback,
        name="api-app-rollback",
    ),
    path("apps/<str:name>/config", deploy_views.app_config, name="api-app-config"),
    path(
        "apps/<str:name>/registry-credentials",
        deploy_views.app_registry_credentials,
        name="api-app-registry-credentials",
    ),
    path(
        "apps/<str:name>/registry-credentials/<str:registry>",
        deploy_views.app_registry_credential,
        name="api-app-registry-credential",
    ),
    path("apps/<str:name>/formation", deploy_views.app_formation, name="api-app-formation"),
    path(
        "apps/<str:name>/formation/<str:process_type>",
        deploy_views.app_scale,
        name="api-app-scale",
    ),
    path("apps/<str:name>/instances", deploy_views.app_instances, name="api-app-instances"),
    path(
        "apps/<str:name>/instances/<str:instance>/<str:action>",
        deploy_views.instance_act,
        name="api-instance-action",
    ),
    path("apps/<str:name>/actions/<str:action>", deploy_views.app_act, name="api-app-action"),
    path("apps/<str:name>/audit", deploy_views.app_audit, name="api-app-audit"),
    path("apps/<str:name>/delete", deploy_views.app_delete, name="api-app-delete"),
]
