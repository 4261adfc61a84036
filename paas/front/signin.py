"""Sign-in forms (the panel's and the admin's) that go through the
throttle (paas/accounts/throttle.py): a refused attempt never reaches the
password check."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from paas.accounts.throttle import signin_address, signin_failed, signin_refusal, signin_succeeded


class ThrottledSignIn:
    """Mixed into Django's authentication forms, before them."""

    request: Any
    cleaned_data: dict[str, Any]

    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "")
        address = signin_address(self.request.META.get("REMOTE_ADDR") if self.request else None)
        refusal = signin_refusal(username=username, address=address)
        if refusal:
            raise forms.ValidationError(refusal, code="throttled")
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        except forms.ValidationError:
            signin_failed(username=username, address=address)
            raise
        # clean() also runs when a field is missing, without authenticating:
        # only a real sign-in may forget the failures.
        if getattr(self, "user_cache", None) is not None:
            signin_succeeded(username=username)
        return cleaned


class SignInForm(ThrottledSignIn, AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your username and password did not match. Try again.",
    }


class AdminSignInForm(ThrottledSignIn, AdminAuthenticationForm):
    pass
