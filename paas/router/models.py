from __future__ import annotations

from django.db import models

from paas.applications.models import App


class Domain(models.Model):
    """A custom domain of an app, with an optional uploaded certificate.

    The hostname is unique platform-wide: one name routes to one app. The
    private key is stored sealed (see :mod:`paas.router.keys`) and is never
    shown again after upload.
    """

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="domains")
    hostname = models.CharField(max_length=253, unique=True)
    cert_pem = models.TextField(blank=True, default="")
    key_sealed = models.TextField(blank=True, default="")
    cert_names = models.JSONField(default=list, blank=True)
    cert_fingerprint = models.CharField(max_length=64, blank=True, default="")
    cert_not_after = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    @property
    def has_certificate(self) -> bool:
        return bool(self.cert_pem)
