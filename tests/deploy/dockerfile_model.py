"""Just enough of the Dockerfile and .dockerignore formats to replay a build without Docker.

The tests use it to check the image's layering, to copy the build context the way Docker
would, and to run the build stage's `uv sync` steps on this machine.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for ins in self.instructions:
            if ins.keyword == "ENV":
                for token in shlex.split(ins.args):
                    key, _, value = token.partition("=")
                    values[key] = value
        return values


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their instructions (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif keyword == "ARG" and not stages:
            continue
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def copy_parts(args: str) -> tuple[dict[str, str], list[str], str]:
    """(flags, sources, destination) of a COPY instruction."""
    tokens = shlex.split(args)
    flags = {}
    while tokens and tokens[0].startswith("--"):
        key, _, value = tokens.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, tokens[:-1], tokens[-1]


class DockerIgnore:
    """Docker's rule: the last matching pattern wins; a match on a directory covers its files."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, str]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
            self.patterns.append((negate, pattern))

    @staticmethod
    def _matches(pattern: str, path: str) -> bool:
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        variants = [pattern]
        if pattern.startswith("**/"):
            variants.append(pattern[3:])
        return any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants)

    def excluded(self, path: str) -> bool:
        result = False
        for negate, pattern in self.patterns:
            if self._matches(pattern, path):
                result = not negate
        return result


def copy_from_context(context: Path, ignore: DockerIgnore, source: str, dest: Path) -> None:
    """COPY source dest, where dest is a directory when it ends in / or source is one."""
    src = context / source
    relative = os.path.normpath(source)
    if src.is_dir():
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(context).as_posix()
            if path.is_file() and not ignore.excluded(rel):
                target = dest / path.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
        return
    if not src.is_file() or ignore.excluded(relative):
        raise FileNotFoundError(f"COPY {source}: not in the build context")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / src.name).write_bytes(src.read_bytes())
