"""The site's URLs and one page that answers as nginx (docker-compose.yml) does while the web
process behind it is down."""

from django.http import HttpResponse
from django.urls import path

from localai_site.urls import urlpatterns as site_urlpatterns

urlpatterns = [
    path("gateway-down/", lambda request: HttpResponse("502 Bad Gateway", status=502)),
    *site_urlpatterns,
]
