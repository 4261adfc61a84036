from django.contrib import admin

from paas.builds.models import Build


@admin.register(Build)
class BuildAdmin(admin.ModelAdmin):
    list_display = ["app", "number", "state", "kind", "created_at", "finished_at"]
    list_filter = ["state", "kind"]
    list_select_related = ["app"]
    readonly_fields = ["id", "archive_path", "lease_expires_at", "steps", "process_types"]
