"""Admin history written before conversations stopped being named by their title still
quotes titles (the start of a person's first message): it names them as they are named now."""

import contextlib
import uuid

from django.db import migrations

# As chat.services.conversations.DELETED; a migration keeps its own copy of what it writes.
DELETED = "deleted conversation"


def titles_scrub(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    LogEntry = apps.get_model("admin", "LogEntry")
    Conversation = apps.get_model("chat", "Conversation")
    content_type = ContentType.objects.filter(app_label="chat", model="conversation").first()
    if content_type is None:
        return  # a new database: no history yet
    entries = LogEntry.objects.filter(content_type=content_type)
    # The history is short and the conversations many: look up only those it names (object_id
    # is text and the primary key a UUID, which PostgreSQL will not compare).
    named = []
    for object_id in entries.values_list("object_id", flat=True).distinct():
        with contextlib.suppress(ValueError):
            named.append(uuid.UUID(object_id))
    existing = Conversation.objects.filter(pk__in=named).values_list("pk", flat=True)
    entries.update(object_repr=DELETED, change_message="")
    for pk in existing:
        entries.filter(object_id=str(pk)).update(object_repr=f"Conversation {pk}")


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0005_encrypted_secrets"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(titles_scrub, migrations.RunPython.noop)]
