from localai_site.core.privacy import Erase, PersonalData, register

from .models import LocalModel, SpeechModel

register(
    PersonalData(
        LocalModel,
        owner="requested_by",
        purpose="Models you installed as an admin; they belong to the instance.",
        category="installed_models",
        fields=("slug", "name", "source", "status", "created_at", "ready_at"),
        erase=Erase.UNLINK,
    ),
    PersonalData(
        SpeechModel,
        owner="requested_by",
        purpose="Speech models you installed as an admin; they belong to the instance.",
        category="installed_speech_models",
        fields=("slug", "name", "status", "created_at"),
        erase=Erase.UNLINK,
    ),
)
