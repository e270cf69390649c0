"""Parser settings (environment ``SLUICE_PARSER_*``)."""

from __future__ import annotations

import os

from pydantic import Field

from sluice.settings import SluiceSettings


class ParserSettings(SluiceSettings):
    parser_group: str = "sluice-parser"
    parser_time_limit: float = Field(
        default=1.0, gt=0, description="CPU seconds one parser run may take"
    )
    parser_memory_limit: int = Field(
        default=64 * 2**20, ge=8 * 2**20, description="Bytes of memory one parser run may use"
    )
    parser_workers: int = Field(
        default_factory=lambda: min(2, len(os.sched_getaffinity(0))),
        ge=1,
        le=64,
        description="Threads running parsers, each with its own sandbox (devices are spread "
        "over them). JavaScript runs without Python's GIL, so while one thread runs parsers "
        "another can validate their output: 2 where the process may use 2 CPUs, else 1",
    )
    parser_suspend_seconds: float = Field(
        default=5.0,
        gt=0,
        description="A device whose parser hits the time or memory limit is suspended this "
        "long (doubling on each repeat); its messages meanwhile are dead-lettered",
    )
    parser_suspend_max: float = Field(
        default=300.0, gt=0, description="Longest suspension of a device's parser, in seconds"
    )
