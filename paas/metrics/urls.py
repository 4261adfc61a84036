from django.urls import path

from paas.metrics import views

urlpatterns = [
    path("apps/<str:name>/metrics.json", views.app_metrics, name="app-metrics"),
]
