from django.http import JsonResponse

from . import probes


class ProbeMiddleware:
    """Answers /healthz and /readyz first, before host checks, sessions or redirects:
    load balancers and container probes call them with internal host names."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == "/healthz":
            return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
        if request.path_info == "/readyz":
            ready, report = probes.readiness()
            return JsonResponse(
                {"status": "ready" if ready else "not ready", **report},
                status=200 if ready else 503,
                headers={"Cache-Control": "no-store"},
            )
        return self.get_response(request)
