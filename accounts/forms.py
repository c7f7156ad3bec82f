from django import forms

from .models import User

MAX_AVATAR_BYTES = 2 * 1024 * 1024
DELETE_WORD = "DELETE"


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
