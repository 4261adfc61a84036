from django.contrib import admin

from paas.hosts.models import Host


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "agent_url", "created_at"]
