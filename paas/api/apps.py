from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "paas.api"
    label = "api"
