"""Small typed readers for environment variables.

Every setting of the instance comes from the environment; a bad value stops start-up
with a message that names the variable and what it expects.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    """The variable's value; empty counts as unset, as compose's ``${VAR:-}`` writes it."""
    value = os.environ.get(name)
    return None if value is None or value.strip() == "" else value


def env_str(name: str, default: str = "") -> str:
    """A string, also readable from a file named by ``<NAME>_FILE`` (Docker secrets)."""
    file_path = _raw(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc}") from exc
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool = False) -> bool:
    raw = _raw(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no.")


def _env_number(name, default, parse, kind: str, minimum, maximum):
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not {kind}.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} is above the maximum of {maximum}.")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    return _env_number(name, default, int, "a whole number", minimum, maximum)


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    return _env_number(name, default, float, "a number", minimum, maximum)


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = _raw(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str, default: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated IP addresses or networks, such as ``127.0.0.1,10.0.0.0/8``."""
    networks = []
    for item in env_list(name, default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an IP address or network such as 10.0.0.0/8."
            ) from None
    return networks


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (_raw(name) or default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of: {', '.join(choices)}.")
    return value


def env_time_zone(name: str, default: str) -> str:
    """An IANA time zone name, such as Europe/Paris."""
    value = env_str(name, default).strip()
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a time zone name such as Europe/Paris."
        ) from None
    return value


def env_url(name: str, default: str) -> str:
    """An http(s) URL without a trailing slash."""
    value = env_str(name, default).strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{name}={value!r} must be an http:// or https:// URL.")
    return value


_URL_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def env_url_path(name: str) -> str:
    """A path the app is served under, such as ``/ai``: no trailing slash, ``""`` at the root."""
    raw = env_str(name).strip()
    segments = raw.strip("/").split("/") if raw.strip("/") else []
    if raw and (
        not raw.startswith("/")
        or any(not _URL_PATH_SEGMENT.fullmatch(part) or part in (".", "..") for part in segments)
    ):
        raise ImproperlyConfigured(
            f"{name}={raw!r} must be a path such as /ai (letters, digits and . _ ~ - between slashes)."
        )
    return "".join(f"/{part}" for part in segments)
