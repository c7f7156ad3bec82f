from django import template
from django.utils.safestring import mark_safe

from chat.models import Provider
from localai_site.core.markdown import markdown_to_html

register = template.Library()


@register.filter
def markdown(text: str) -> str:
    """Model output as sanitised HTML (localai_site/core/markdown.py)."""
    return mark_safe(markdown_to_html(text))  # noqa: S308 - sanitised by nh3


@register.filter
def model_name(model_id: str) -> str:
    """``local:smollm2-135m-instruct`` → ``smollm2-135m-instruct``; cloud ids keep the model part."""
    return model_id.split(":", 1)[-1].split("/", 1)[-1]


@register.filter
def recipient(provider: str) -> str:
    return "this instance" if provider == Provider.LOCAL else provider
