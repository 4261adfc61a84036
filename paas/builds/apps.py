from django.apps import AppConfig


class BuildsConfig(AppConfig):
    name = "paas.builds"
    label = "builds"
