"""Action templates: ``$VARIABLE$``-style placeholders filled from the data that fired (pure).

Known placeholders: ``$VARIABLE$ $VALUE$ $UNIT$ $TIME$ $LOCATION$ $DEVICE$ $DEVICE.NAME$
$ACTION.STATE$``. Anything else between dollars is left as written. Substitution is one
pass, so a value that itself contains ``$VALUE$`` is not expanded again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sluice.dataitems import format_time
from sluice_actions.conditions import as_text

PLACEHOLDER = re.compile(r"\$([A-Z][A-Z_]*(?:\.[A-Z_]+)?)\$")


@dataclass(slots=True, frozen=True)
class TemplateContext:
    variable: str = ""
    value: str = ""
    unit: str = ""
    time: str = ""
    location: str = ""
    device: str = ""
    device_name: str = ""
    action_state: str = ""

    def lookup(self, name: str) -> str | None:
        return {
            "VARIABLE": self.variable,
            "VALUE": self.value,
            "UNIT": self.unit,
            "TIME": self.time,
            "LOCATION": self.location,
            "DEVICE": self.device,
            "DEVICE.NAME": self.device_name,
            "ACTION.STATE": self.action_state,
        }.get(name)


def location_text(location: Any) -> str:
    """``lat,lng`` from a GeoJSON Point or a ``{lat, lng}`` object; empty when absent."""
    if not isinstance(location, Mapping):
        return ""
    coordinates = location.get("coordinates")
    if isinstance(coordinates, list | tuple) and len(coordinates) >= 2:
        return f"{as_text(coordinates[1])},{as_text(coordinates[0])}"
    lat, lng = location.get("lat"), location.get("lng", location.get("lon"))
    if lat is None or lng is None:
        return ""
    return f"{as_text(lat)},{as_text(lng)}"


def context_for(
    item: Mapping[str, Any] | None,
    *,
    device_id: str,
    device_name: str,
    received_at_ms: int,
    action_state: str,
) -> TemplateContext:
    """The placeholders for the first data item that fired an action (or none)."""
    item = item or {}
    when = item.get("time")
    if not isinstance(when, str) or not when:
        when = format_time(datetime.fromtimestamp(received_at_ms / 1000, UTC))
    variable = item.get("variable")
    unit = item.get("unit")
    return TemplateContext(
        variable=variable if isinstance(variable, str) else "",
        value=as_text(item.get("value")),
        unit=unit if isinstance(unit, str) else "",
        time=when,
        location=location_text(item.get("location")),
        device=device_id,
        device_name=device_name,
        action_state=action_state,
    )


def render(template: str, ctx: TemplateContext, escape: Callable[[str], str] | None = None) -> str:
    """Fill the placeholders of ``template``; ``escape`` is applied to each inserted value."""

    def fill(match: re.Match[str]) -> str:
        value = ctx.lookup(match.group(1))
        if value is None:
            return match.group(0)
        return escape(value) if escape else value

    return PLACEHOLDER.sub(fill, template)


def render_url(template: str, ctx: TemplateContext) -> str:
    """A URL: inserted values are percent-encoded so they cannot change its structure."""
    return render(template, ctx, lambda value: quote(value, safe=""))


def one_line(value: str) -> str:
    """Header values and e-mail subjects: line breaks would start a new header."""
    return value.replace("\r", " ").replace("\n", " ")


def render_line(template: str, ctx: TemplateContext) -> str:
    return one_line(render(template, ctx))
