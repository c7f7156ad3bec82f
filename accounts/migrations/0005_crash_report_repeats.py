"""One crash report per failure: repeats are counted on it, its fingerprint is unique."""

import django.utils.timezone
from django.db import migrations, models
from django.db.models import Count, Max, Min


def reports_merge(apps, schema_editor):
    # Reports stored before this kept one row per occurrence: keep the latest of each
    # fingerprint, counting the others and when the first happened.
    CrashReport = apps.get_model("accounts", "CrashReport")
    CrashReport.objects.update(last_seen_at=models.F("created_at"))
    repeated = (
        CrashReport.objects.values("fingerprint")
        .annotate(n=Count("pk"), first=Min("created_at"), last=Max("created_at"))
        .filter(n__gt=1)
    )
    for group in repeated:
        same = CrashReport.objects.filter(fingerprint=group["fingerprint"]).order_by("-created_at", "-pk")
        kept = same.first()
        same.exclude(pk=kept.pk).delete()
        CrashReport.objects.filter(pk=kept.pk).update(
            count=group["n"], created_at=group["first"], last_seen_at=group["last"]
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_privacy_choices_analytics_crashes"),
    ]

    operations = [
        migrations.AddField(
            model_name="crashreport",
            name="count",
            field=models.PositiveIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="crashreport",
            name="last_seen_at",
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now),
        ),
        migrations.RunPython(reports_merge, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="crashreport",
            name="fingerprint",
            field=models.CharField(max_length=40, unique=True),
        ),
        migrations.AlterModelOptions(
            name="crashreport",
            options={"ordering": ["-last_seen_at"]},
        ),
    ]
