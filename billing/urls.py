from django.urls import path

from . import views

app_name = "billing"

urlpatterns = [
    path("", views.plan, name="plan"),
    path("checkout/<slug:slug>/", views.checkout, name="checkout"),
    path("portal/", views.portal, name="portal"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
]
