from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@require_GET
@never_cache
def healthz(request):
    """Liveness only: the process answers. Readiness (database, Redis, workers) is /readyz."""
    return JsonResponse({"status": "ok"})
