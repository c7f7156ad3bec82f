from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from models_hub.uses import register_active_uses

        from .selectors import replies_active_count

        # The hub keeps a model that is writing replies: it learns of them from here.
        register_active_uses(lambda model: replies_active_count(model_id=model.model_id))
