"""Everything that changes the hub's models, one module per concern; views, tasks, the admin,
the CLI and tests call it as ``services.<thing>_<action>``.

Dependencies among the modules point one way (an import-linter contract keeps it so):
``registering`` uses ``downloads``; ``downloads``, ``managing`` and ``speech`` use ``model_file``
and ``token``, which use none of the others.
"""

from .downloads import (
    download_complete,
    downloads_fail_stale,
    model_download,
    model_download_cancel,
    model_download_start,
)
from .managing import model_delete, model_make_default, model_settings_update
from .model_file import model_folder
from .registering import (
    bundled_model_register,
    model_add_from_hub,
    model_add_from_path,
    model_install,
    models_missing_mark,
)
from .speech import (
    speech_model_cancel,
    speech_model_delete,
    speech_model_download,
    speech_model_install,
    speech_model_use,
)
from .token import hub_token_get, hub_token_set

__all__ = [
    "bundled_model_register",
    "download_complete",
    "downloads_fail_stale",
    "hub_token_get",
    "hub_token_set",
    "model_add_from_hub",
    "model_add_from_path",
    "model_delete",
    "model_download",
    "model_download_cancel",
    "model_download_start",
    "model_folder",
    "model_install",
    "models_missing_mark",
    "model_make_default",
    "model_settings_update",
    "speech_model_cancel",
    "speech_model_delete",
    "speech_model_download",
    "speech_model_install",
    "speech_model_use",
]
