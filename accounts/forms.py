from django import forms

from .models import User

MAX_AVATAR_BYTES = 2 * 1024 * 1024


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["display_name", "avatar", "local_only"]
        labels = {"local_only": "Local models only"}
        help_texts = {
            "display_name": "Shown in the app instead of your email address.",
            "local_only": "Never send anything I write to a cloud provider, whatever model I pick.",
        }

    def clean_avatar(self):
        avatar = self.cleaned_data.get("avatar")
        if avatar and getattr(avatar, "size", 0) > MAX_AVATAR_BYTES:
            raise forms.ValidationError("The picture is larger than 2 MB; please choose a smaller one.")
        return avatar
