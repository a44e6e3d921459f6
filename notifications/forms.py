"""The subscription form: the target checked by its channel, credentials never shown."""

from __future__ import annotations

from typing import Any

from django import forms

from notifications.models import Subscription
from notifications.registry import KINDS, masked

KEEP = "Leave empty to keep {current}; type a new one to replace it."


class SubscriptionForm(forms.ModelForm):
    """A routing key, a Slack URL or a signing secret is written, never read back: the page
    shows its first and last characters, and an empty box keeps what is stored."""

    class Meta:
        model = Subscription
        fields = ["channel", "target", "policy", "secret"]
        widgets = {
            "target": forms.TextInput(attrs={"size": 36}),
            "secret": forms.PasswordInput(render_value=False),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["target"].help_text = " ".join(
            f"{kind.label}: {kind.target_help}" for kind in KINDS.values() if kind.offered
        )
        stored = self.instance
        if stored.pk and KINDS.get(stored.channel) and KINDS[stored.channel].secret_target:
            self._hide("target", stored.target)
        if stored.pk and stored.secret:
            self._hide("secret", stored.secret)

    def _hide(self, name: str, current: str) -> None:
        field = self.fields[name]
        field.widget = forms.PasswordInput(
            render_value=False, attrs={"placeholder": masked(current), "size": 36}
        )
        field.help_text = KEEP.format(current=masked(current))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        stored = self.instance
        for name in ("target", "secret"):
            if not data.get(name) and isinstance(self.fields[name].widget, forms.PasswordInput):
                data[name] = getattr(stored, name, "") or ""
        kind = KINDS.get(data.get("channel", ""))
        if kind is None:
            return data
        target = data.get("target", "")
        if target or kind.name != "pagerduty":
            try:
                kind.recipients(target)
            except forms.ValidationError as error:
                self.add_error("target", error)
        if kind.signed and not data.get("secret"):
            self.add_error("secret", f"A {kind.label.lower()} needs a secret to sign with.")
        return data
