"""Actions settings (environment ``SLUICE_ACTION_*``, ``SLUICE_ACTIONS_*``)."""

from __future__ import annotations

from pydantic import Field

from sluice.settings import SluiceSettings


class ActionsSettings(SluiceSettings):
    actions_group: str = "sluice-actions"
    actions_jobs_group: str = Field(
        default="sluice-actions-jobs", description="Consumer group of the webhook/e-mail jobs"
    )
    action_attempts: int = Field(
        default=10, ge=1, le=10, description="Attempts of a webhook or e-mail before giving up"
    )
    action_retry_base: float = Field(
        default=1.0, gt=0, description="Seconds before the second attempt; doubles each time"
    )
    action_retry_max_delay: float = Field(
        default=60.0, gt=0, description="Longest wait between two attempts, in seconds"
    )
    action_http_timeout: float = Field(default=10.0, gt=0, description="Webhook timeout (s)")
    action_smtp_timeout: float = Field(default=20.0, gt=0, description="SMTP timeout (s)")
    action_concurrency: int = Field(
        default=64, ge=1, description="Webhook calls and e-mails in progress at once, in all"
    )
    action_concurrency_per_action: int = Field(
        default=4, ge=1, description="…and for any one action, so one dead host cannot take all"
    )
    action_max_pending: int = Field(
        default=10_000,
        ge=10,
        description="Jobs held in memory; past this the job topic is paused (Kafka keeps them)",
    )
