from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path

from paas.api.api import api


def no_such_endpoint(request: HttpRequest, rest: str) -> JsonResponse:
    """A path the API does not have answers in the API's error shape, not
    with an HTML page (a client then says what went wrong)."""
    message = f"The API has no {request.path[:200]!r}; see /api/v1/openapi.json."
    return JsonResponse({"error": "not_found", "message": message}, status=404)


urlpatterns = [
    path("", api.urls),
    re_path(r"^(?P<rest>.*)$", no_such_endpoint),
]
