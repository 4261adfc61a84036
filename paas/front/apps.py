from django.apps import AppConfig


class FrontConfig(AppConfig):
    name = "paas.front"
    label = "front"
