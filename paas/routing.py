from django.urls import path

from paas.hosts.consumers import LiveEventsConsumer
from paas.logs.consumers import AppLogConsumer, BuildLogConsumer

websocket_urlpatterns = [
    path("ws/builds/<str:build_id>/", BuildLogConsumer.as_asgi()),
    path("ws/apps/<str:name>/logs/", AppLogConsumer.as_asgi()),
    path("ws/events/", LiveEventsConsumer.as_asgi()),
]
