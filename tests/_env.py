"""Loaded by pytest before Django (``-p tests._env``): tests keep their data apart."""

import os
from pathlib import Path

os.environ.setdefault("LOCALAI_DATA_DIR", str(Path(__file__).resolve().parent.parent / ".test-data"))
os.environ.setdefault("CHAT_TEMPERATURE", "0")
# Each run its own test database (processes the tests start inherit it): runs side by side
# would otherwise share one SQLite file.
os.environ.setdefault("LOCALAI_TEST_RUN", str(os.getpid()))
