"""The app page's metrics as JSON (drawn by static/metrics.js)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from paas.applications.selectors import app_for_user
from paas.core.errors import NotFound, PaasError
from paas.metrics.selectors import metrics_series, span_named


@login_required
@require_GET
def app_metrics(request: HttpRequest, name: str) -> JsonResponse:
    """``?span=1h`` (10 s points) or ``24h`` (5 min points) of every instance."""
    try:
        app = app_for_user(user=request.user, name=name)
        span = span_named(request.GET.get("span", "1h"))
    except NotFound as exc:
        raise Http404(exc.message) from None
    except PaasError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    return JsonResponse(metrics_series(app_id=app.pk, span=span))
