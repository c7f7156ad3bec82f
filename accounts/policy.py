"""The privacy policy text: a published version, or the built-in one a fresh instance shows."""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from localai_site.core.markdown import markdown_to_html

from .models import PolicyVersion
from .retention import RULES
from .selectors import instance_settings_get


def policy_markdown(policy: PolicyVersion | None) -> str:
    if policy is not None:
        return policy.body
    # The built-in text states this instance's own settings, so it cannot drift from them.
    context = {
        "retention": [(rule.kept, rule.days) for rule in RULES],
        "minimum_age": instance_settings_get().minimum_age,
        "cloud_enabled": instance_settings_get().cloud_enabled,
    }
    return render_to_string("accounts/policy_default.md", context)


def policy_html(policy: PolicyVersion | None) -> SafeString:
    return SafeString(markdown_to_html(policy_markdown(policy)))
