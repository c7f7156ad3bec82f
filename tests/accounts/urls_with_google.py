"""The site's URLs with Google sign-in routed, as setting GOOGLE_CLIENT_ID makes them."""

from django.urls import include, path

from localai_site.urls import urlpatterns as site_urlpatterns

urlpatterns = [path("accounts/", include("allauth.socialaccount.providers.google.urls")), *site_urlpatterns]
