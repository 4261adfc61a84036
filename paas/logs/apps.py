from django.apps import AppConfig


class LogsConfig(AppConfig):
    name = "paas.logs"
    label = "logs"
