from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count
from django.template.defaultfilters import filesizeformat

from localai_site.core.queues import Queue

from .catalog import CATALOG, SPEECH_CATALOG, CatalogEntry, SpeechEntry
from .machine import Machine, disk_free, machine_facts, memory_needed
from .models import DOWNLOAD_ACTIVE, HubSettings, LocalModel, LocalModelStatus, SpeechModel
from .runtime import load_spec_for, replies_at_once
from .workers import WorkerView, workers_list


def local_models_ready() -> list[LocalModel]:
    return list(LocalModel.objects.filter(status=LocalModelStatus.READY))


def local_model_default() -> LocalModel | None:
    ready = LocalModel.objects.filter(status=LocalModelStatus.READY)
    return ready.filter(is_default=True).first() or ready.first()


def local_model_get(*, slug: str) -> LocalModel | None:
    return LocalModel.objects.filter(slug=slug, status=LocalModelStatus.READY).first()


def hub_settings_get() -> HubSettings:
    return HubSettings.load()


# --- The hub page -----------------------------------------------------------------------


@dataclass
class Fit:
    needed: int
    label: str  # "fits", "tight", "too big"
    text: str


def fit_for(*, needed: int, machine: Machine) -> Fit:
    if needed <= machine.memory_budget:
        return Fit(needed, "fits", f"Fits: needs about {filesizeformat(needed)}")
    if needed <= machine.ram_total:
        return Fit(
            needed,
            "tight",
            f"Needs about {filesizeformat(needed)}, more than the {filesizeformat(machine.memory_budget)} "
            "budget for models: others will be unloaded",
        )
    return Fit(
        needed,
        "too big",
        f"Needs about {filesizeformat(needed)}; the machine has {filesizeformat(machine.ram_total)}",
    )


@dataclass
class CatalogRow:
    entry: CatalogEntry
    model: LocalModel | None
    fit: Fit


@dataclass
class InstalledRow:
    model: LocalModel
    fit: Fit
    n_ctx: int
    loaded_on: list[str] = field(default_factory=list)


@dataclass
class HubPage:
    machine: Machine
    disk_free: int
    catalog: list[CatalogRow]
    installed: list[InstalledRow]
    workers: list[WorkerView]
    token_hint: str


def hub_page() -> HubPage:
    workers = workers_list()
    # The machine the models run on: a local worker's (the largest, in scaled mode).
    local = [w for w in workers if Queue.LOCAL in w.queues and w.machine]
    machine = (
        Machine(**max(local, key=lambda w: w.machine["memory_budget"]).machine) if local else machine_facts()
    )
    models = {model.slug: model for model in LocalModel.objects.order_by("-is_default", "name")}
    default_ctx = settings.LLAMA_CONTEXT
    catalog = [
        CatalogRow(
            entry=entry,
            model=models.get(entry.slug),
            fit=fit_for(
                needed=memory_needed(
                    size_bytes=entry.download_bytes,
                    kv_bytes_per_token=entry.kv_bytes_per_token,
                    # Each of its slots holds a whole window of KV cache.
                    n_ctx=min(entry.context_length, default_ctx)
                    * replies_at_once(sees_images=entry.sees_images),
                ),
                machine=machine,
            ),
        )
        for entry in CATALOG
    ]
    installed = []
    for model in models.values():
        spec = load_spec_for(model)
        installed.append(
            InstalledRow(
                model=model,
                fit=fit_for(needed=spec.memory_bytes, machine=machine),
                n_ctx=spec.n_ctx,
                loaded_on=[f"{w.host}:{w.pid}" for w in workers if w.holds(model.slug)],
            )
        )
    return HubPage(
        machine=machine,
        disk_free=disk_free(settings.MODELS_DIR),
        catalog=catalog,
        installed=installed,
        workers=workers,
        token_hint=hub_settings_get().access_token_hint,
    )


def speech_model_in_use() -> SpeechModel | None:
    """The installed speech model voice input uses; None: the bundled tiny.en."""
    return SpeechModel.objects.filter(in_use=True, status=LocalModelStatus.READY).first()


@dataclass(frozen=True)
class SpeechRow:
    """A speech model of the catalog as the hub page shows it."""

    entry: SpeechEntry
    model: SpeechModel | None  # None: not installed

    @property
    def progress_percent(self) -> int:
        model = self.model
        return int(100 * model.downloaded_bytes / model.size_bytes) if model and model.size_bytes else 0


def speech_rows() -> list[SpeechRow]:
    installed = {model.slug: model for model in SpeechModel.objects.all()}
    return [SpeechRow(entry, installed.get(entry.slug)) for entry in SPEECH_CATALOG]


def downloads_by_status() -> dict[str, int]:
    """Downloads of local and speech models under way (queued, downloading, verifying) or
    failed, by status; every one of those statuses is present."""
    statuses = [*DOWNLOAD_ACTIVE, LocalModelStatus.FAILED]
    counts = {str(status): 0 for status in statuses}
    for model in (LocalModel, SpeechModel):
        for status, n in (
            model.objects.filter(status__in=statuses).values_list("status").annotate(n=Count("id")).order_by()
        ):
            counts[status] += n
    return counts
