from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "paas.accounts"
    label = "accounts"

    def ready(self) -> None:
        from paas.accounts import signals  # noqa: F401 - connects receivers
