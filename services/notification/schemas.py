"""Pydantic models of the notification service's operations (inputs validated before anything is written)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CategoryName = Literal["security", "transactional", "order_updates", "marketing"]
TEMPLATE_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,99}$"
LOCALE_PATTERN = r"^[a-z]{2}(-[A-Z]{2})?$"
# Deliberately loose (one @, no spaces): the SMTP server has the last word, and test domains must pass.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"


class PreferenceView(BaseModel):
    category: CategoryName
    channel: Literal["email"]
    enabled: bool
    editable: bool = Field(description="security mails are always sent")


class PreferenceUpdate(BaseModel):
    category: CategoryName
    channel: Literal["email"] = "email"
    enabled: bool


class TemplateIn(BaseModel):
    key: str = Field(pattern=TEMPLATE_KEY_PATTERN)
    locale: str = Field(default="en", pattern=LOCALE_PATTERN)
    category: CategoryName
    description: str | None = Field(default=None, max_length=2000)
    subject_template: str = Field(min_length=1, max_length=2000)
    text_template: str = Field(min_length=1, max_length=20_000)
    html_template: str | None = Field(default=None, max_length=40_000)
    is_active: bool = True


class TemplateUpdate(BaseModel):
    category: CategoryName | None = None
    description: str | None = Field(default=None, max_length=2000)
    subject_template: str | None = Field(default=None, min_length=1, max_length=2000)
    text_template: str | None = Field(default=None, min_length=1, max_length=20_000)
    html_template: str | None = Field(default=None, max_length=40_000)
    clear_html: bool = Field(default=False, description="remove the HTML part")
    is_active: bool | None = None

    @model_validator(mode="after")
    def _not_null(self) -> TemplateUpdate:
        """Leave a field out to keep it; null clears only ``description`` and ``html_template``."""
        for name in ("category", "subject_template", "text_template", "is_active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class TemplateView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    key: str
    locale: str
    category: str
    description: str | None
    subject_template: str
    text_template: str
    html_template: str | None
    version: int
    is_active: bool
    updated_at: datetime | None


class RenderedView(BaseModel):
    subject: str
    text: str
    html: str | None


class PartitionsEnsured(BaseModel):
    created: list[str]
    existing: list[str]
    dropped: list[str] = []  # older than NOTIFICATION_RETENTION_MONTHS
