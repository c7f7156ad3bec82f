import django.db.models.deletion
from django.db import migrations, models

from chat.providers.cloud import model_sees_images


def sees_images_guess(apps, schema_editor):
    """Models discovered before the flag existed get the guess discovery makes now."""
    CloudModel = apps.get_model("chat", "CloudModel")
    for model in CloudModel.objects.only("name"):
        if model_sees_images(model.name):
            CloudModel.objects.filter(pk=model.pk).update(sees_images=True)


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0006_admin_history_without_titles'),
    ]

    operations = [
        migrations.AddField(
            model_name='cloudmodel',
            name='sees_images',
            field=models.BooleanField(default=False, help_text='Accepts images (OpenAI-style image parts). Guessed from the name at discovery.'),
        ),
        migrations.AddField(
            model_name='upload',
            name='message',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='attachments', to='chat.message'),
        ),
        migrations.AddField(
            model_name='upload',
            name='model',
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name='upload',
            name='provider',
            field=models.CharField(blank=True, help_text='Who received this file.', max_length=50),
        ),
        migrations.AddField(
            model_name='upload',
            name='page_count',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='upload',
            name='text_status',
            field=models.CharField(blank=True, choices=[('pending', 'Being read'), ('read', 'Read'), ('no_text', 'No text layer'), ('failed', 'Could not be read')], max_length=10),
        ),
        migrations.CreateModel(
            name='UploadPage',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField()),
                ('text', models.TextField(blank=True)),
                ('upload', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='pages', to='chat.upload')),
            ],
            options={
                'ordering': ['upload', 'number'],
                'constraints': [models.UniqueConstraint(fields=('upload', 'number'), name='unique_upload_page')],
            },
        ),
        migrations.RunPython(sees_images_guess, migrations.RunPython.noop),
    ]
