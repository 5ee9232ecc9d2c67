"""Refusals of the notification service: one class per refusal (the class name is the error ``type``)."""

from __future__ import annotations

from core.errors import Conflict, InvalidRequest, NotFound


class TemplateNotFound(NotFound):
    """No active template with this key (in this locale or the default one)."""


class TemplateRenderError(InvalidRequest):
    """The context does not fit the template (a missing variable, a wrong type)."""

    title = "Template could not be rendered"


class TemplateInvalid(InvalidRequest):
    """A template that does not compile (syntax error, unknown filter)."""

    title = "Invalid template"


class DuplicateTemplate(Conflict):
    """A template with this key and locale already exists."""


class PreferenceNotEditable(InvalidRequest):
    """Security mails (verification, password reset) are always sent."""
