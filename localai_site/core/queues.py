"""The task queues: each is served by the workers started for it (``localai worker -Q``)."""

from __future__ import annotations

import enum


class Queue(enum.StrEnum):
    LOCAL = "local"  # replies of local models (batched by each worker's model runner)
    CLOUD = "cloud"  # replies of cloud providers (waiting on the network)
    DOWNLOADS = "downloads"  # model downloads
    EXPORTS = "exports"  # people's data downloads (ZIPs of everything kept about them)
    DEFAULT = "default"  # housekeeping: retention, failing stale work


# A local worker's own queue is ``local.<host>.<pid>``: replies for a model it holds.
WORKER_QUEUE_PREFIX = f"{Queue.LOCAL}."
