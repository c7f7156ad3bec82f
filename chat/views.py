from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from models_hub.selectors import local_models_ready

from . import selectors, services
from .errors import ChatError
from .forms import MessageForm


def _owned_or_404(request, conversation_id):
    conversation = selectors.conversation_get_owned(user=request.user, conversation_id=conversation_id)
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _page(request, *, conversation=None, draft: str = ""):
    context = {
        "conversations": selectors.conversations_for(user=request.user)[:100],
        "conversation": conversation,
        "chat_messages": selectors.conversation_messages_page(conversation=conversation)[0]
        if conversation
        else [],
        "local_models": local_models_ready(),
        "draft": draft,
    }
    return render(request, "chat/chat.html", context)


@login_required
def home(request):
    return _page(request)


@login_required
@require_POST
def conversation_start(request):
    form = MessageForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Write a message first.")
        return redirect("chat:home")
    try:
        conversation = services.conversation_create(owner=request.user, model_id=form.cleaned_data["model"])
        services.message_send(conversation=conversation, content=form.cleaned_data["content"])
    except ChatError as exc:
        messages.error(request, exc.message)
        return _page(request, draft=form.cleaned_data["content"])
    return redirect("chat:conversation", conversation_id=conversation.pk)


@login_required
def conversation_detail(request, conversation_id):
    conversation = _owned_or_404(request, conversation_id)
    services.replies_fail_stale(conversation=conversation)
    return _page(request, conversation=conversation)


@login_required
@require_POST
def message_send(request, conversation_id):
    """The form path, for browsers without JavaScript; the socket does the same."""
    conversation = _owned_or_404(request, conversation_id)
    form = MessageForm(request.POST)
    try:
        if not form.is_valid():
            raise ChatError("empty", "Write a message first.")
        services.message_send(
            conversation=conversation,
            content=form.cleaned_data["content"],
            model_id=form.cleaned_data["model"],
        )
    except ChatError as exc:
        messages.error(request, exc.message)
        return _page(request, conversation=conversation, draft=request.POST.get("content", ""))
    return redirect("chat:conversation", conversation_id=conversation.pk)


@login_required
@require_POST
def reply_stop(request, conversation_id):
    services.reply_stop(conversation=_owned_or_404(request, conversation_id))
    return redirect("chat:conversation", conversation_id=conversation_id)


@login_required
@require_POST
def conversation_delete(request, conversation_id):
    services.conversation_delete(conversation=_owned_or_404(request, conversation_id))
    messages.success(request, "The conversation was deleted.")
    return redirect("chat:home")
