from django import template

from chat.display import message_display, upload_reading, upload_recipients
from localai_site.core.sockets import CLOSE_CODES

register = template.Library()

# How a message is shown (chat/display.py), for templates/chat/message.html.
register.filter("message_display", message_display)
register.filter("upload_reading", upload_reading)
register.filter("upload_recipients", upload_recipients)


@register.simple_tag
def socket_close_codes() -> str:
    """The close codes after which a page's script does not reopen its socket."""
    return " ".join(str(code) for code in CLOSE_CODES.values())
