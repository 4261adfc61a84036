from django.contrib import admin

from paas.router.models import Domain


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ["hostname", "app", "cert_not_after"]
    search_fields = ["hostname", "app__name"]
    # The sealed key stays out of the admin altogether.
    exclude = ["key_sealed"]
    readonly_fields = ["cert_pem", "cert_names", "cert_fingerprint", "cert_not_after"]
