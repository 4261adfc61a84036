"""Placeholder: replaced by the foundation's real settings in the next commit."""

SECRET_KEY = "placeholder"
INSTALLED_APPS: list[str] = []
