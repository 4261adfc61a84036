from django.contrib import admin

from paas.applications.models import App


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "created_at"]
    search_fields = ["name"]
    list_select_related = ["team"]
