from django.apps import AppConfig


class HostsConfig(AppConfig):
    name = "paas.hosts"
    label = "hosts"
