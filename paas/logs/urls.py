from django.urls import path

from paas.logs import views

urlpatterns = [
    path("apps/<str:name>/logs.txt", views.app_logs_download, name="app-logs-download"),
]
