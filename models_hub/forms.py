from __future__ import annotations

from django import forms

from .models import LocalModel


class AddModelForm(forms.Form):
    SOURCES = [("hub", "From Hugging Face"), ("path", "A file on the server")]

    source = forms.ChoiceField(choices=SOURCES, initial="hub", widget=forms.RadioSelect)
    repo = forms.CharField(
        label="Repository",
        required=False,
        max_length=200,
        widget=forms.TextInput({"placeholder": "owner/name-GGUF"}),
    )
    file = forms.CharField(
        label="File",
        required=False,
        max_length=300,
        widget=forms.TextInput({"placeholder": "model-q4_k_m.gguf"}),
    )
    revision = forms.CharField(
        label="Revision", required=False, max_length=64, widget=forms.TextInput({"placeholder": "main"})
    )
    path = forms.CharField(
        label="Path on the server",
        required=False,
        max_length=1024,
        widget=forms.TextInput({"placeholder": "/data/models/my-model.gguf"}),
    )
    name = forms.CharField(label="Display name", required=False, max_length=120)

    def clean(self):
        data = super().clean()
        if data.get("source") == "hub" and not (data.get("repo") and data.get("file")):
            raise forms.ValidationError("Give the repository and the .gguf file in it.")
        if data.get("source") == "path" and not data.get("path"):
            raise forms.ValidationError("Give the path of the .gguf file on the server.")
        return data


class ModelSettingsForm(forms.ModelForm):
    class Meta:
        model = LocalModel
        fields = ["n_ctx", "n_gpu_layers", "n_threads", "parallel_replies", "chat_template_override"]
        widgets = {"chat_template_override": forms.Textarea({"rows": 4, "spellcheck": "false"})}
        help_texts = {
            "n_ctx": "Tokens of conversation the model sees. Empty: the instance default.",
            "n_gpu_layers": "Layers to offload to the GPU (-1: all). Needs llama.cpp built with GPU support.",
            "n_threads": "CPU threads per reply. Empty: LLAMA_THREADS.",
            "chat_template_override": "A Jinja chat template instead of the file's own. Empty: the file's.",
        }


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Access token",
        required=False,
        max_length=400,
        strip=True,
        widget=forms.PasswordInput({"autocomplete": "off", "placeholder": "hf_…"}),
    )
