from django.db import migrations

BUILTIN = [
    ("Helpful assistant", "Friendly, clear answers.", "You are a helpful, friendly assistant. Answer clearly."),
    ("Concise", "Short answers, no filler.", "Answer in as few words as a complete answer needs. No preamble."),
    (
        "Writing coach",
        "Improves your text and says why.",
        "You are a writing coach. Suggest concrete improvements to the user's text and explain each briefly.",
    ),
    (
        "Code helper",
        "Explains and writes code.",
        "You are a careful programmer. Give working code in fenced code blocks and explain the key steps.",
    ),
]


def add_builtin(apps, schema_editor):
    Persona = apps.get_model("chat", "Persona")
    for name, description, prompt in BUILTIN:
        Persona.objects.get_or_create(
            name=name, is_builtin=True, defaults={"description": description, "system_prompt": prompt}
        )


def remove_builtin(apps, schema_editor):
    apps.get_model("chat", "Persona").objects.filter(is_builtin=True).delete()


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial")]
    operations = [migrations.RunPython(add_builtin, remove_builtin)]
