"""The side effects jobs ask for, one attempt at a time: HTTP POST and SMTP (adapters)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

import aiosmtplib
import httpx

from sluice_actions.jobs import Job

log = logging.getLogger("sluice.actions.effects")

RETRIES_HEADER = "TagoIO-Retries"
SECURITY_MODES = ("starttls", "tls", "none")


@dataclass(slots=True, frozen=True)
class AttemptResult:
    ok: bool
    error: str = ""
    retryable: bool = True  # a later attempt may succeed
    status: int | None = None  # HTTP status, when there was a response


SUCCESS = AttemptResult(ok=True)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HttpPoster:
    """POSTs the data array; any 2xx is success, anything else (or no answer) a failure."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def attempt(self, job: Job) -> AttemptResult:
        request = job.request
        headers = {str(k): str(v) for k, v in (request.get("headers") or {}).items()}
        headers[RETRIES_HEADER] = str(job.attempt - 1)
        try:
            response = await self.client.post(
                str(request["url"]), json=request.get("body", []), headers=headers
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return AttemptResult(False, f"invalid URL: {exc}", retryable=False)
        except httpx.TimeoutException as exc:
            return AttemptResult(False, f"no response in time ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return AttemptResult(False, f"request failed: {_short(str(exc)) or type(exc).__name__}")
        except ValueError as exc:  # e.g. a header value httpx refuses
            return AttemptResult(False, f"invalid request: {exc}", retryable=False)
        if 200 <= response.status_code < 300:
            return AttemptResult(True, status=response.status_code)
        reason = response.reason_phrase or ""
        body = _short(response.text, 200) if response.content else ""
        error = f"HTTP {response.status_code} {reason}".rstrip() + (f": {body}" if body else "")
        return AttemptResult(False, error, status=response.status_code)


@dataclass(slots=True, frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    security: str = "starttls"  # starttls | tls | none

    @classmethod
    def from_account_settings(cls, settings: dict[str, Any] | None) -> SmtpSettings | None:
        smtp = (settings or {}).get("smtp")
        if not isinstance(smtp, dict) or not smtp.get("host") or not smtp.get("from"):
            return None
        return cls(
            host=str(smtp["host"]),
            port=int(smtp.get("port") or 587),
            sender=str(smtp["from"]),
            username=smtp.get("username") or None,
            password=smtp.get("password") or None,
            security=str(smtp.get("security") or "starttls"),
        )


SmtpLookup = Callable[[str], Awaitable[SmtpSettings | None]]


def build_message(sender: str, to: list[str], subject: str, text: str, job_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "sluice.local"
    message["Message-ID"] = make_msgid(idstring=job_id, domain=domain)
    message.set_content(text)
    return message


class Mailer:
    """Sends an e-mail through the account's own SMTP server (settings read per attempt)."""

    def __init__(self, smtp_settings: SmtpLookup, timeout: float) -> None:
        self.smtp_settings = smtp_settings
        self.timeout = timeout

    async def attempt(self, job: Job) -> AttemptResult:
        settings = await self.smtp_settings(job.account)
        if settings is None:
            # Retried: setting them (PUT /account/smtp) lets the pending e-mails go out.
            return AttemptResult(
                False, "the account has no SMTP settings: set them with PUT /account/smtp"
            )
        request = job.request
        to = [str(address) for address in request.get("to", [])]
        message = build_message(
            settings.sender,
            to,
            str(request.get("subject", "")),
            str(request.get("message", "")),
            job.id,
        )
        where = f"{settings.host}:{settings.port}"
        try:
            await aiosmtplib.send(
                message,
                sender=parseaddr(settings.sender)[1] or settings.sender,  # no display name
                recipients=to,
                hostname=settings.host,
                port=settings.port,
                username=settings.username,
                password=settings.password,
                use_tls=settings.security == "tls",
                start_tls=settings.security == "starttls",
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(f"{r.recipient} ({r.code} {r.message})" for r in exc.recipients)
            return AttemptResult(False, f"SMTP {where} refused every recipient: {refused}", False)
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as exc:
            permanent = exc.code >= 500
            return AttemptResult(False, f"SMTP {where} refused the e-mail: {exc}", not permanent)
        except aiosmtplib.SMTPAuthenticationError as exc:
            return AttemptResult(
                False, f"SMTP {where} refused the login ({exc.code}): check PUT /account/smtp"
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            return AttemptResult(
                False,
                f"SMTP {where} unreachable or failing: {_short(str(exc)) or type(exc).__name__}",
            )
        return SUCCESS
