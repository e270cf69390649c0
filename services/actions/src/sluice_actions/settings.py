"""Actions settings."""

from __future__ import annotations

from sluice.settings import SluiceSettings


class ActionsSettings(SluiceSettings):
    actions_group: str = "sluice-actions"
