from django.apps import AppConfig


class ApplicationsConfig(AppConfig):
    name = "paas.applications"
    label = "applications"
