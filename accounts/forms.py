from allauth.core import context
from django import forms
from django.contrib.auth.forms import UserChangeForm
from django.db import transaction

from localai_site.core.files import files_delete_after_commit

from .models import ApiKeyScope, User
from .selectors import instance_settings_get
from .services import signup_consents_record

MAX_AVATAR_BYTES = 2 * 1024 * 1024
DELETE_WORD = "DELETE"


class AvatarFileMixin:
    """For a ModelForm of a User (the profile page, the admin's user page): the picture's size
    limit, and a replaced or cleared picture leaves storage with the row that named it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored_avatar = self.instance.avatar  # the picture on file before this form

    def clean_avatar(self):
        avatar = self.cleaned_data.get("avatar")
        if avatar and getattr(avatar, "size", 0) > MAX_AVATAR_BYTES:
            raise forms.ValidationError("The picture is larger than 2 MB; please choose a smaller one.")
        return avatar

    def avatar_forget_replaced(self) -> None:
        """Call in the transaction that saves the user."""
        if self.instance.avatar.name != self.stored_avatar.name:
            files_delete_after_commit([self.stored_avatar])


class ProfileForm(AvatarFileMixin, forms.ModelForm):
    class Meta:
        model = User
        fields = ["display_name", "avatar", "local_only", "theme", "speech_voice", "speech_rate"]
        labels = {
            "local_only": "Local models only",
            "theme": "Appearance",
            "speech_voice": "Read-aloud voice",
            "speech_rate": "Read-aloud speed",
        }
        help_texts = {
            "display_name": "Shown in the app instead of your email address.",
            "local_only": "Never send anything I write to a cloud provider, whatever model I pick.",
            "theme": "System follows your device's light or dark setting.",
            "speech_voice": "One of your browser's voices; empty for its default.",
            "speech_rate": "1 is normal; from 0.5 (slower) to 2 (faster).",
        }
        widgets = {
            "theme": forms.RadioSelect(attrs={"class": "choice-row"}),
            # static/accounts/speech_settings.js lists the browser's voices (the server cannot know them).
            "speech_voice": forms.TextInput(attrs={"list": "speech-voices", "autocomplete": "off"}),
            "speech_rate": forms.NumberInput(attrs={"step": "0.1"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["theme"].required = False
        self.fields["speech_rate"].required = False

    def clean_theme(self) -> str:
        # A form without it (a profile page left open across the upgrade that added it) keeps it.
        return self.cleaned_data["theme"] or self.instance.theme

    def clean_speech_rate(self) -> float:
        rate = self.cleaned_data["speech_rate"]  # the same for a form from before it existed
        return self.instance.speech_rate if rate is None else rate

    @transaction.atomic
    def save(self, commit: bool = True) -> User:
        if commit:
            self.avatar_forget_replaced()
        return super().save(commit)


class AdminUserChangeForm(AvatarFileMixin, UserChangeForm):
    pass


class AccountDeleteForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    confirmation = forms.CharField(label=f"Type {DELETE_WORD} to confirm")

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password

    def clean_confirmation(self):
        if self.cleaned_data["confirmation"].strip() != DELETE_WORD:
            raise forms.ValidationError(f"Type {DELETE_WORD} in capitals to confirm.")
        return DELETE_WORD


class SignupConsentForm(forms.Form):
    """Added to allauth's signup form: the age confirmation and the analytics choice."""

    minimum_age = forms.BooleanField(required=True, label_suffix="")
    analytics = forms.BooleanField(
        required=False,
        label_suffix="",
        label="Help the admins improve this instance with usage analytics",
        help_text="Which features and models you use, never what you write. You can change this any time.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        age = instance_settings_get().minimum_age
        self.fields["minimum_age"].label = f"I am at least {age} years old"
        self.fields["minimum_age"].error_messages["required"] = (
            f"You must be at least {age} to use this instance; please confirm your age."
        )
        if getattr(context.request, "gpc", False):
            del self.fields["analytics"]  # the browser already said no

    def signup(self, request, user) -> None:
        analytics = self.cleaned_data.get("analytics", False) and not getattr(request, "gpc", False)
        signup_consents_record(user=user, analytics=analytics)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="Which tool will use it, so you can tell keys apart.")
    scope = forms.ChoiceField(
        choices=ApiKeyScope.choices,
        initial=ApiKeyScope.CHAT,
        widget=forms.RadioSelect(attrs={"class": "choice-row"}),
        label="It may",
    )
    local_only = forms.BooleanField(
        required=False, label="Local models only", help_text="Its chats are never sent to a cloud provider."
    )
    keep_history = forms.BooleanField(
        required=False,
        initial=True,
        label="Keep its chats in my history",
        help_text="Off: each chat is deleted once it is answered.",
    )
    expires_on = forms.DateField(
        required=False,
        label="Expires on",
        help_text="Empty: until you revoke it.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
