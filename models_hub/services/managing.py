"""Models already in the hub: deleting one, its settings, the default for new chats."""

from __future__ import annotations

import shutil

from django.db import transaction

from localai_site.core.refusals import Refusal
from models_hub.events import removed_event_publish
from models_hub.models import PARALLEL_REPLIES_MAX, LocalModel, LocalModelStatus, ModelAction, ModelSource
from models_hub.uses import active_uses

from .model_file import model_folder

MAX_CHAT_TEMPLATE = 64 * 1024


@transaction.atomic
def model_delete(*, model: LocalModel) -> None:
    """Remove a model; a downloaded file (or partial one) is deleted from disk.
    A model that is writing replies right now is kept until they finish."""
    model = LocalModel.objects.select_for_update().get(pk=model.pk)
    model.action_check(ModelAction.DELETE)
    in_use = active_uses(model)
    if in_use:
        raise Refusal(
            "in_use",
            f"{model.name} is writing {in_use} repl{'y' if in_use == 1 else 'ies'} right now; "
            "delete it once they have finished.",
        )
    folder = model_folder(model) if model.source == ModelSource.HUB else None
    slug, was_default = model.slug, model.is_default
    model.delete()
    if was_default:
        successor = (
            LocalModel.objects.filter(status=LocalModelStatus.READY).order_by("-is_bundled", "name").first()
        )
        if successor is not None:
            LocalModel.objects.filter(pk=successor.pk).update(is_default=True)

    def after_commit() -> None:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        removed_event_publish(slug)

    transaction.on_commit(after_commit)


def _template_check(template: str) -> None:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if len(template) > MAX_CHAT_TEMPLATE:
        raise Refusal("bad_template", f"The chat template is longer than {MAX_CHAT_TEMPLATE // 1024} KB.")
    try:
        ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template).render(
            messages=[{"role": "user", "content": "Hello"}],
            add_generation_prompt=True,
            bos_token="<s>",
            eos_token="</s>",
        )
    except jinja2.TemplateError as exc:
        raise Refusal("bad_template", f"The chat template does not work: {exc}.") from exc


def model_settings_update(
    *,
    model: LocalModel,
    n_ctx: int | None,
    n_gpu_layers: int | None,
    n_threads: int | None,
    parallel_replies: int | None,
    chat_template_override: str,
) -> LocalModel:
    """How a worker loads the model; empty values keep the instance's defaults. Workers
    holding it load it again with the new settings on its next use."""
    model.action_check(ModelAction.CONFIGURE)
    if n_ctx is not None and not 256 <= n_ctx <= model.context_length:
        raise Refusal(
            "bad_setting",
            f"The context size must be between 256 and the model's {model.context_length} tokens.",
        )
    if n_gpu_layers is not None and n_gpu_layers < -1:
        raise Refusal("bad_setting", "GPU layers is a number of layers, or -1 for all of them.")
    if n_threads is not None and not 1 <= n_threads <= 256:
        raise Refusal("bad_setting", "Threads must be between 1 and 256.")
    if parallel_replies is not None and not 1 <= parallel_replies <= PARALLEL_REPLIES_MAX:
        raise Refusal("bad_setting", f"Replies at once must be between 1 and {PARALLEL_REPLIES_MAX}.")
    template = chat_template_override.strip()
    if template:
        _template_check(template)
    model.n_ctx, model.n_gpu_layers, model.n_threads = n_ctx, n_gpu_layers, n_threads
    model.parallel_replies = parallel_replies
    model.chat_template_override = template
    model.save(
        update_fields=["n_ctx", "n_gpu_layers", "n_threads", "parallel_replies", "chat_template_override"]
    )
    return model


@transaction.atomic
def model_make_default(*, model: LocalModel) -> LocalModel:
    """The model new conversations start with."""
    model.action_check(ModelAction.MAKE_DEFAULT)
    LocalModel.objects.filter(is_default=True).exclude(pk=model.pk).update(is_default=False)
    LocalModel.objects.filter(pk=model.pk).update(is_default=True)
    model.is_default = True
    return model
