import uuid

from django import forms

from .models import Persona, Upload


class UploadIdsField(forms.Field):
    """The ids of files stored beforehand, one ``uploads`` field each (the composer's chips)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[uuid.UUID]:
        if not value:
            return []
        if len(value) > Upload.PER_MESSAGE:
            raise forms.ValidationError(f"A message can carry at most {Upload.PER_MESSAGE} files.")
        try:
            return [uuid.UUID(str(item)) for item in value]
        except ValueError:
            raise forms.ValidationError("That is not a file of yours.") from None


class MessageForm(forms.Form):
    content = forms.CharField(widget=forms.Textarea, strip=False)
    model = forms.CharField(required=False)
    persona = forms.IntegerField(required=False)
    uploads = UploadIdsField(required=False)


class UploadForm(forms.Form):
    file = forms.FileField(allow_empty_file=True)  # an empty file gets the service's own words
    conversation = forms.UUIDField(required=False)


class PersonaForm(forms.ModelForm):
    class Meta:
        model = Persona
        fields = ["name", "description", "system_prompt", "default_model", "temperature"]
        widgets = {"system_prompt": forms.Textarea(attrs={"rows": 6})}
        help_texts = {
            "system_prompt": "Instructions the model gets before every conversation with this persona.",
            "default_model": "Optional: the model new chats with this persona start with.",
            "temperature": "Optional, 0 to 2: lower is more focused, higher more varied.",
        }

    def __init__(self, *args, model_choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["default_model"] = forms.ChoiceField(
            choices=[("", "Instance default"), *model_choices], required=False, label="Default model"
        )

    def clean_temperature(self):
        value = self.cleaned_data.get("temperature")
        if value is not None and not 0 <= value <= 2:
            raise forms.ValidationError("Choose a temperature between 0 and 2.")
        return value


class ImageForm(forms.Form):
    """The gallery's request; the service checks every value again (``services.art``)."""

    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)
    model = forms.CharField(required=False)
    shape = forms.CharField(required=False)
    quality = forms.CharField(required=False)
    count = forms.IntegerField(required=False, min_value=1)
    style = forms.CharField(required=False)
    mask = forms.FileField(required=False)  # an edit's painted mask, a PNG from the canvas
