from django.urls import path

from paas.api.api import api

urlpatterns = [path("", api.urls)]
