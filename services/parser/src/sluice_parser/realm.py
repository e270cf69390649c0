"""One QuickJS context booted with the payload-parser environment (the js/ directory).

A realm is either *hardened* (built-ins frozen, reused for many runs, reports whether a run
left it pristine) or *throwaway* (plain built-ins for one run, exactly Node's semantics).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, NamedTuple, cast

import orjson
import quickjs

from sluice.dataitems import long_integer_in

# Library code is evaluated below this many blank lines, so a stack frame's line number
# tells user code (at most 64 kB, so fewer lines than this) from library code.
LINE_PAD = 100_000
BOOT_TIME_LIMIT = 10.0
COMPILE_CACHE_SIZE = 256
JS_STACK_BYTES = 1024 * 1024
MAX_SAFE_INTEGER = 2**53 - 1
MAX_MESSAGE_CHARS = 1024


class RealmBroken(Exception):
    """The engine stopped a run (time or memory limit, or an uncatchable error)."""

    def __init__(self, kind: str, detail: str, console: list[str]) -> None:
        super().__init__(detail)
        self.kind = kind  # "timeout" | "memory" | "internal"
        self.detail = detail
        self.console = console


@dataclass(frozen=True, slots=True)
class ScriptError:
    """An exception the parser script raised (or a compile error)."""

    name: str | None
    message: str
    code: str | None
    line: int | None

    @property
    def out_of_memory(self) -> bool:
        return self.name == "InternalError" and self.message == "out of memory"

    @property
    def bare(self) -> bool:
        """The script threw null or undefined — or the engine did, out of memory."""
        return self.name is None and self.message in ("null", "undefined")

    def describe(self) -> str:
        message = self.message
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + "…"
        if self.name is None:
            text = f"Uncaught {message}"
        elif self.code:
            text = f"{self.name} [{self.code}]: {message}"
        else:
            text = f"{self.name}: {message}"
        return text if self.line is None else f"{text} (line {self.line})"


@dataclass(slots=True)
class RealmResult:
    payload_json: str  # the payload as the engine wrote it ("null" when there is none)
    console: list[str]
    error: ScriptError | None
    pristine: bool  # the realm is exactly as before the run and may serve the next one
    duration_ms: float | None = None  # measured by the engine (runs of a batch)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A parser compiled in one realm: the function, and the number runBatch knows it by."""

    fn: Any
    slot: int
    asynchronous: bool  # uses top-level await: runs one at a time, with the job queue drained


class BatchRun(NamedTuple):  # (made per message)
    compiled: Compiled
    payload_json: str
    device_json: str
    raw: str | None  # the raw bytes as latin-1 text, for scripts that read raw_payload


def _js_int(text: str) -> int | float:
    """JSON integers beyond JavaScript's safe range were never exact: keep them as floats."""
    value = int(text)
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else float(value)


_decoder = json.JSONDecoder(parse_int=_js_int)


def loads(text: str) -> Any:
    """Parse JSON produced by the engine with JavaScript's number semantics."""
    encoded = text.encode("utf-8", "surrogatepass")
    if not long_integer_in(text, encoded):
        try:
            return orjson.loads(encoded)
        except orjson.JSONDecodeError:
            pass  # lone surrogates, nesting past orjson's limit: the exact decoder decides
    return _decoder.decode(text)


def _js_source(name: str) -> str:
    return resources.files("sluice_parser").joinpath("js", name).read_text(encoding="utf-8")


# Evaluated in this order inside one function; each file defines one create/add function.
_ENVIRONMENT = (
    "node_errors.js",
    "encodings.js",
    "buffer_numbers.js",
    "buffer.js",
    "console.js",
    "prelude.js",
)


@cache
def _boot_source(harden: bool) -> str:
    options = json.dumps({"harden": harden, "linePad": LINE_PAD})
    sources = "\n".join(_js_source(name) for name in _ENVIRONMENT)
    return (
        "\n" * LINE_PAD
        + "(function (options) {\n"
        + sources
        + "\nreturn createRuntime(createBuffer(), options);\n})("
        + options
        + ")"
    )


def _error_from(info: Any) -> ScriptError:
    return ScriptError(
        name=info.get("name"),
        message=str(info.get("message", "")),
        code=info.get("code"),
        line=info.get("line"),
    )


def _result(envelope: str) -> RealmResult:
    meta, _, payload_json = envelope.partition("\x1f")
    try:  # flags, counts, a duration and texts: no number JavaScript could not hold
        pristine, error, logged, dropped, duration = orjson.loads(meta)
    except orjson.JSONDecodeError:  # console lines with lone surrogates
        pristine, error, logged, dropped, duration = loads(meta)
    if payload_json.count("[") + payload_json.count("{") > _SURELY_DECODABLE_BRACKETS:
        try:  # the payload is read when it is needed; this one may be nested too deeply
            loads(payload_json)
        except RecursionError:
            nested = ScriptError("Error", "payload is nested too deeply to convert", None, None)
            return RealmResult("null", _console_lines(logged, dropped), nested, False)
    return RealmResult(
        payload_json=payload_json,
        console=_console_lines(logged, dropped),
        error=None if error is None else _error_from(error),
        pristine=bool(pristine),
        duration_ms=duration,
    )


# JSON text with at most this many brackets cannot nest deeper than the decoders reach.
_SURELY_DECODABLE_BRACKETS = 200


def _console_lines(logged: list[str], dropped: int) -> list[str]:
    if dropped:
        return [*logged, f"log: … {dropped} more console lines not kept"]
    return logged


class ParserRealm:
    """A booted QuickJS context; not thread-safe (the sandbox serialises access)."""

    def __init__(self, *, harden: bool, time_limit: float, memory_limit: int) -> None:
        self.harden = harden
        self.time_limit = time_limit
        self._context = quickjs.Context()
        self._context.set_memory_limit(memory_limit)
        self._context.set_max_stack_size(JS_STACK_BYTES)
        self._context.set_time_limit(max(time_limit, BOOT_TIME_LIMIT))
        try:
            entry = self._context.eval(_boot_source(harden))
        except quickjs.JSException as exc:
            detail = str(exc).split("\n", 1)[0]
            raise RuntimeError(f"the parser environment failed to start: {detail}") from None
        self._context.set_time_limit(time_limit)
        self._compile = entry("compile")
        self._run = entry("run")
        self._settle = entry("settle")
        self._take_console = entry("takeConsole")
        self._bind = entry("bind")
        self._unbind = entry("unbind")
        self._run_batch = entry("runBatch")
        self._compiled: OrderedDict[str, Compiled] = OrderedDict()
        self._next_slot = 0
        self.retired = False  # a compile left the realm changed: do not use it again

    def memory_used(self) -> int:
        return cast(int, self._context.memory()["malloc_size"])

    def compile(self, code: str) -> Compiled | ScriptError:
        """The compiled parser (cached by source text), or a ScriptError for a bad script.

        A rejected script may have run code while it was parsed; if that left the realm
        changed, `retired` becomes true.
        """
        compiled = self._compiled.get(code)
        if compiled is not None:
            self._compiled.move_to_end(code)
            return compiled
        fn = self._call(self._compile, code)
        if isinstance(fn, str):
            error, pristine = loads(fn)
            if self.harden and (not pristine or self._jobs_left_behind()):
                self.retired = True
            return _error_from(error)
        slot = self._next_slot
        self._next_slot += 1
        compiled = Compiled(fn, slot, bool(self._call(self._bind, slot, fn)))
        self._compiled[code] = compiled
        if len(self._compiled) > COMPILE_CACHE_SIZE:
            _, evicted = self._compiled.popitem(last=False)
            self._call(self._unbind, evicted.slot)
        return compiled

    def run(
        self, compiled: Compiled, payload_json: str, device_json: str, raw: str | None
    ) -> RealmResult:
        envelope = self._call(self._run, compiled.fn, payload_json, device_json, raw)
        if envelope is None:
            self._drain_jobs()
            envelope = self._call(self._settle)
        # A job the run left queued (a promise reaction) would execute during a later run.
        jobs_left = self.harden and self._jobs_left_behind()
        result = _result(cast(str, envelope))
        result.pristine = result.pristine and not jobs_left
        return result

    def run_batch(self, runs: Sequence[BatchRun], time_limit: float) -> list[RealmResult]:
        """Run synchronous parsers one after another in one call into the engine, each as
        `run` would; all of them share `time_limit`. Returns the results of a prefix of
        `runs`: the batch stops after a run that leaves the realm unfit (not pristine, or out
        of memory), and the last result returned then says so.
        """
        slots = orjson.dumps([run.compiled.slot for run in runs]).decode()
        payloads = "[" + ",".join([run.payload_json for run in runs]) + "]"
        devices = orjson.dumps([run.device_json for run in runs]).decode()
        raws = None
        if any(run.raw is not None for run in runs):
            raws = orjson.dumps([run.raw for run in runs]).decode()
        self._context.set_time_limit(time_limit)
        try:
            text = self._call(self._run_batch, slots, payloads, devices, raws)
        finally:
            self._context.set_time_limit(self.time_limit)
        results = [_result(envelope) for envelope in cast(str, text).split("\n")]
        if self.harden and self._jobs_left_behind():
            results[-1].pristine = False
        return results

    def _drain_jobs(self) -> None:
        # Top-level await: run queued jobs under one CPU budget for the whole run.
        deadline = time.process_time() + self.time_limit
        try:
            while True:
                remaining = deadline - time.process_time()
                if remaining <= 0:
                    raise RealmBroken("timeout", "interrupted", self._salvage_console())
                self._context.set_time_limit(remaining)
                if not self._call(self._context.execute_pending_job):
                    return
        finally:
            self._context.set_time_limit(self.time_limit)

    def _jobs_left_behind(self) -> bool:
        # Any job still queued means the realm cannot be trusted; with a zero time limit a
        # job that starts is interrupted at once.
        self._context.set_time_limit(0)
        try:
            return bool(self._context.execute_pending_job())
        except quickjs.JSException:
            return True
        finally:
            self._context.set_time_limit(self.time_limit)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except quickjs.JSException as exc:
            detail = str(exc).split("\n", 1)[0]
            if detail == "InternalError: interrupted":
                kind = "timeout"
            elif detail.startswith("InternalError: out of memory"):
                kind = "memory"
            else:
                kind = "internal"
            raise RealmBroken(kind, detail, self._salvage_console()) from None

    def _salvage_console(self) -> list[str]:
        try:
            logged, dropped = loads(self._take_console())
        except Exception:  # the realm may be out of memory: lose the lines, keep the error
            return []
        return _console_lines(logged, dropped)
