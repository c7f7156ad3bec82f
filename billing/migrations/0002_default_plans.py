"""The three plans of the privacy policy; admins change them, and set Stripe prices to sell them."""

from django.db import migrations

DEFAULT_PLANS = [
    {
        "slug": "free",
        "name": "Free",
        "description": "Local models without limits, and a taste of the cloud ones.",
        "is_default": True,
        "position": 0,
        "cloud_messages_per_day": 30,
        "image_generations_per_month": 5,
        "max_upload_mb": 10,
    },
    {
        "slug": "ai-chat-pro",
        "name": "AI Chat Pro",
        "description": "Plenty of cloud chat every day, and the largest files.",
        "position": 10,
        "cloud_messages_per_day": 500,
        "image_generations_per_month": 20,
        "max_upload_mb": None,
    },
    {
        "slug": "ai-art-pro",
        "name": "AI Art Pro",
        "description": "Everything in AI Chat Pro, with many more image generations.",
        "position": 20,
        "cloud_messages_per_day": 500,
        "image_generations_per_month": 500,
        "max_upload_mb": None,
    },
]


def plans_create(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for plan in DEFAULT_PLANS:
        Plan.objects.get_or_create(slug=plan["slug"], defaults=plan)


def plans_delete(apps, schema_editor):
    apps.get_model("billing", "Plan").objects.filter(slug__in=[p["slug"] for p in DEFAULT_PLANS]).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_plans_subscriptions_invoices")]

    operations = [migrations.RunPython(plans_create, plans_delete)]
