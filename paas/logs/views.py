"""Log pages' HTTP side: the download of an app's stored lines."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import (
    Http404,
    HttpRequest,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.http import require_GET

from paas.applications.selectors import app_for_user
from paas.core.errors import NotFound, PaasError
from paas.logs.filters import LogFilter
from paas.logs.selectors import logs_lines_text


@login_required
@require_GET
def app_logs_download(request: HttpRequest, name: str) -> HttpResponseBase:
    """Every stored line matching the filters (process, instance, source, q), as text."""
    try:
        app = app_for_user(user=request.user, name=name)
        flt = LogFilter.parse(request.GET)
    except NotFound as exc:
        raise Http404(exc.message) from None
    except PaasError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    response = StreamingHttpResponse(
        logs_lines_text(app_id=app.pk, flt=flt), content_type="text/plain; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{app.name}.log"'
    return response
