from django.apps import AppConfig


class RouterAppConfig(AppConfig):
    name = "paas.router"
    label = "router"
    default_auto_field = "django.db.models.BigAutoField"
