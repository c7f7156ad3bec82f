from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from accounts.retention import RetentionRule, retention_rule_register
        from models_hub.uses import register_active_uses

        from .retention import unsent_uploads_purge
        from .selectors import replies_active_count

        # The hub keeps a model that is writing replies: it learns of them from here.
        register_active_uses(lambda model: replies_active_count(model_id=model.model_id))
        retention_rule_register(
            RetentionRule("unsent_uploads", "Files attached but never sent", unsent_uploads_purge)
        )
