from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "paas.metrics"
    label = "metrics"
