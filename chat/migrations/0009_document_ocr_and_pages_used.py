from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_images_gallery"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="pages_used",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name="upload",
            name="ocr_pages",
            field=models.PositiveIntegerField(default=0, help_text="Scanned pages read by OCR."),
        ),
        migrations.AddField(
            model_name="uploadpage",
            name="ocr",
            field=models.BooleanField(default=False, help_text="Scanned: its text was read by OCR."),
        ),
        migrations.AlterField(
            model_name="upload",
            name="text_status",
            field=models.CharField(
                blank=True,
                choices=[
                    ("pending", "Being read"),
                    ("read", "Read"),
                    ("no_text", "No text layer"),
                    ("no_ocr", "Scanned, and OCR is not installed"),
                    ("failed", "Could not be read"),
                ],
                max_length=10,
            ),
        ),
    ]
