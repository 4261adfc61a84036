"""The control plane: a Django project served over ASGI."""

from paas.celery import app as celery_app

__all__ = ["celery_app"]
