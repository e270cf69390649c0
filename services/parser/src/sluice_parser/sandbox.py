"""The JavaScript payload-parser sandbox: runs TagoIO-style parser scripts on QuickJS.

A parser is a script body that reads and may reassign the global `payload`; it also sees
`device`, `raw_payload`, `Buffer` and `console`, and nothing of the host. Runs are limited in
CPU time, memory and stack, and no run can see what an earlier one left behind.

Isolation: one *hardened* realm serves most runs. Its built-ins are frozen, so a script
cannot change what the next one sees; after each run the realm removes the globals the script
added and reports whether it is pristine; if not (or after a timeout, an out-of-memory error
or a job left queued) the realm is thrown away and a new one is booted. Scripts whose source
extends built-ins (`Array.prototype.sum = ...`, `Math.clamp = ...`), which would find them
frozen there, or uses eval get a throwaway realm of their own per run, with Node's semantics.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from types import TracebackType
from typing import Any, NamedTuple

from sluice_parser.realm import (
    BatchRun,
    ParserRealm,
    RealmBroken,
    RealmResult,
    ScriptError,
    loads,
)

MAX_CODE_BYTES = 64 * 1024
BUILTIN_PARSERS: tuple[str, ...] = ("json-flatten", "senml", "cayenne-lpp")
# A device's payload_parser may name a built-in instead of holding code: "@sluice/senml".
BUILTIN_PREFIX = "@sluice/"

# Replace the shared realm when it has grown this far towards its memory limit (a safety
# net: garbage in reference cycles and cached functions are what stays between runs).
_MEMORY_REFRESH_SHARE = 0.5
_MEMORY_CHECK_EVERY = 1000

# Runs of cheap parsers go into the engine in batches (one call for many runs). A batch holds
# at most this many runs and, by the parsers' recent average run times, this much work; it
# shares one time limit, and a batch that hits it is run again one message at a time, each
# with the full per-run limit, so only parsers far below the limit are batched.
BATCH_RUNS = 64
BATCH_WORK_SECONDS = 0.005
BATCH_TIME_LIMIT = 0.1
_BATCH_MAX_RUN_SECONDS = 0.001
_COST_WEIGHT = 0.1  # of the newest run in a parser's average run time
_LIMIT_OUTCOMES = frozenset({"timeout", "memory", "internal"})
_COSTS_KEPT = 1024

_BUILTIN_NAMES = (
    "Object|Function|Array|String|Number|Boolean|Symbol|BigInt|Math|JSON|Reflect|Date|RegExp"
    "|Promise|Map|Set|WeakMap|WeakSet|WeakRef|Iterator|ArrayBuffer|DataView|Buffer|console"
    "|Error|EvalError|RangeError|ReferenceError|SyntaxError|TypeError|URIError|AggregateError"
    "|Int8Array|Uint8Array|Uint8ClampedArray|Int16Array|Uint16Array|Int32Array|Uint32Array"
    "|Float16Array|Float32Array|Float64Array|BigInt64Array|BigUint64Array"
)
_MEMBER = r"(?:\s*\.\s*[A-Za-z_$][\w$]*|\s*\[[^\]\n]*\])"
# Source that needs Node's exact semantics where the shared realm differs: it (probably)
# modifies a built-in (assignment to a member of a built-in global, Object.assign onto one,
# `__proto__`, the reflective calls that redefine properties and prototypes), or uses eval.
# Only the choice of realm depends on it, never isolation.
_NEEDS_OWN_REALM = re.compile(
    r"__proto__|\b(?:setPrototypeOf|defineProperty|defineProperties|eval)\b"
    rf"|\bassign\s*\(\s*(?:{_BUILTIN_NAMES})\b"
    rf"|(?<![\w$.])(?:{_BUILTIN_NAMES}){_MEMBER}+\s*(?:[-+*/%&|^]|\*\*|<<|>>>?|&&|\|\||\?\?)?=(?![=>])"
)


class RunRequest(NamedTuple):  # (made per message: a tuple is 3x cheaper than a frozen dataclass)
    """One message for ParserSandbox.run_many: the parser's code, its input as JSON text."""

    code: str
    payload_json: str
    device_json: str
    raw_payload: bytes | None = None


class ParserCodeTooLarge(ValueError):
    """The parser source is longer than the sandbox accepts."""


@dataclass
class ParserRun:
    # what the script left in `payload`, as the engine wrote it (JSON.stringify); "null"
    # when it left nothing, or the run failed
    payload_json: str
    console: list[str]  # "log: ...", "error: ..." lines in order
    error: str | None  # None on success, else a message for the Live Inspector
    duration_ms: float
    # "ok", or what stopped the run: "error" (the script threw or did not compile),
    # "timeout", "memory" (a limit), "internal" (the engine itself failed)
    outcome: str = "ok"
    bare: bool = False  # the error is a thrown null or undefined

    @property
    def payload(self) -> Any:
        """What the script left in `payload`, as JSON-compatible Python values."""
        return loads(self.payload_json)


_encode_json = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class _Script:
    source: str  # what the engine compiles (lone surrogates replaced)
    size: int  # UTF-8 bytes of the code as given
    own_realm: bool  # needs a throwaway realm of its own for each run
    uses_raw: bool  # names raw_payload (no Buffer is built for scripts that never read it)

    def raw_text(self, raw_payload: bytes | None) -> str | None:
        """The raw bytes as the engine takes them (latin-1 text), if the script reads them."""
        if raw_payload is None or not self.uses_raw:
            return None
        return bytes(raw_payload).decode("latin-1")


@lru_cache(maxsize=256)
def _script(code: str) -> _Script:
    size = len(code.encode("utf-8", "surrogatepass"))
    # The engine takes UTF-8: lone surrogates cannot cross, replace them.
    source = code if code.isascii() else code.encode("utf-8", "replace").decode("utf-8")
    needs_own_realm = _NEEDS_OWN_REALM.search(source) is not None
    return _Script(source, size, needs_own_realm, "raw_payload" in source)


@cache
def builtin_parser(name: str) -> str:
    """The JavaScript source of a built-in parser from the library (see BUILTIN_PARSERS)."""
    if name not in BUILTIN_PARSERS:
        raise KeyError(
            f"unknown built-in parser {name!r}; choose one of {', '.join(BUILTIN_PARSERS)}"
        )
    path = resources.files("sluice_parser").joinpath(
        "js", "library", name.replace("-", "_") + ".js"
    )
    return path.read_text(encoding="utf-8")


def resolve_parser(source: str) -> str:
    """The code to run for a device's payload_parser: its text, or a built-in's by reference.

    Raises KeyError (with the names to choose from) for an unknown "@sluice/..." reference.
    """
    if source.startswith(BUILTIN_PREFIX):
        return builtin_parser(source[len(BUILTIN_PREFIX) :].strip())
    return source


class ParserSandbox:
    """Runs parser scripts; one instance may be shared by threads (runs are serialised)."""

    def __init__(
        self,
        *,
        time_limit: float = 1.0,
        memory_limit: int = 64 * 2**20,
        max_code_bytes: int = MAX_CODE_BYTES,
    ) -> None:
        if time_limit <= 0:
            raise ValueError("time_limit must be a positive number of seconds")
        self._time_limit = float(time_limit)
        self._memory_limit = memory_limit
        self._max_code_bytes = max_code_bytes
        self._lock = threading.Lock()
        self._closed = False
        self._runs_since_check = 0
        self._costs: dict[str, float] = {}  # parser source -> average seconds per run
        self._shared: ParserRealm | None = self._new_realm(harden=True)

    def __enter__(self) -> ParserSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._shared = None

    def run(
        self,
        code: str,
        payload: Any,
        device: dict[str, Any] | None = None,
        raw_payload: bytes | None = None,
        *,
        device_json: str | None = None,
        payload_json: str | None = None,
    ) -> ParserRun:
        """Run `code` with `payload`; script errors and limits are reported in the result.

        `raw_payload` becomes a Buffer only for scripts whose source names raw_payload; others
        see null there (building it costs more than many parsers take to run). A caller that
        runs many messages of one device may pass the device as JSON text (`device_json`, of
        the same shape as `device`) to save encoding it each time; a caller holding the payload
        as JSON text already may pass that (`payload_json`, then `payload` is not read).
        """
        started = time.perf_counter()
        script = self.check_code(code)
        if payload_json is None:
            payload_json = _to_json(payload, "payload")
        if device_json is None:
            device_json = _to_json(_device_view(device), "device")
        raw = script.raw_text(raw_payload)
        with self._lock:
            if self._closed:
                raise RuntimeError("the parser sandbox is closed")
            outcome = self._run_locked(script, payload_json, device_json, raw)
        outcome.duration_ms = (time.perf_counter() - started) * 1000.0
        return outcome

    def run_many(self, requests: Sequence[RunRequest]) -> list[ParserRun]:
        """Run parsers on several messages in order; the results of a non-empty prefix.

        Each result is what `run` would give for that message. Fewer results than requests
        come back when the sandbox had to stop (a run hit a limit or left the realm unfit,
        or the next parser is one to run alone): the caller goes on with the rest, so it can
        act on each result (suspend a device) before the next message runs. Raises
        ParserCodeTooLarge when the first request's code is too large.
        """
        if not requests:
            return []
        with self._lock:
            if self._closed:
                raise RuntimeError("the parser sandbox is closed")
            batch = self._batch(requests)
            done = self._run_batch_locked(batch) if len(batch) > 1 else []
        if done is None:  # the batch hit its limit: each message again, with its own
            return self._run_alone_until_limit(requests[: len(batch)])
        return done or self._run_alone_until_limit(requests[:1])

    def _batch(self, requests: Sequence[RunRequest]) -> list[tuple[_Script, RunRequest]]:
        # The longest prefix of runs of cheap, synchronous parsers that share the realm.
        batch: list[tuple[_Script, RunRequest]] = []
        work = 0.0
        for request in requests[:BATCH_RUNS]:
            script = _script(request.code)
            cost = self._costs.get(script.source)
            if (
                cost is None
                or cost > _BATCH_MAX_RUN_SECONDS
                or script.own_realm
                or script.size > self._max_code_bytes
                or work + cost > BATCH_WORK_SECONDS
            ):
                break
            work += cost
            batch.append((script, request))
        return batch

    def _run_batch_locked(self, batch: list[tuple[_Script, RunRequest]]) -> list[ParserRun] | None:
        """The results of a prefix of the batch ([] when not even two of its parsers can run
        in a batch), or None when it must be run again one message at a time (it hit the
        batch's time limit, or the engine failed)."""
        runs: list[BatchRun] = []
        try:
            realm = self._shared_realm()
            for script, request in batch:
                compiled = realm.compile(script.source)
                if isinstance(compiled, ScriptError) or compiled.asynchronous:
                    # Such parsers run alone (an async one needs the job queue drained).
                    self._costs[script.source] = math.inf
                    if realm.retired:
                        self._shared = None
                    break
                raw = script.raw_text(request.raw_payload)
                runs.append(BatchRun(compiled, request.payload_json, request.device_json, raw))
            if len(runs) < 2 or self._shared is None:
                return []
            results = realm.run_batch(runs, min(self._time_limit, BATCH_TIME_LIMIT))
        except RealmBroken:
            self._shared = None
            return None
        self._runs_since_check += len(results) - 1
        if not all(result.pristine for result in results):
            self._shared = None
        done = []
        for (script, request), result in zip(batch, results, strict=False):
            if result.error is not None and result.error.bare:
                # It ends the batch: run it again alone (see _run_locked).
                self._shared = None
                started = time.perf_counter()
                raw = script.raw_text(request.raw_payload)
                outcome = self._run_locked(script, request.payload_json, request.device_json, raw)
                outcome.duration_ms = (time.perf_counter() - started) * 1000.0
                done.append(outcome)
                break
            outcome = self._outcome(result)
            outcome.duration_ms = result.duration_ms or 0.0
            self._note_cost(script.source, outcome.duration_ms / 1000.0)
            if outcome.outcome in _LIMIT_OUTCOMES:
                self._costs[script.source] = math.inf  # from now on it runs alone
            done.append(outcome)
        return done

    def _run_alone_until_limit(self, requests: Sequence[RunRequest]) -> list[ParserRun]:
        done = []
        for request in requests:
            run = self.run(
                request.code,
                None,
                raw_payload=request.raw_payload,
                device_json=request.device_json,
                payload_json=request.payload_json,
            )
            done.append(run)
            if run.outcome in _LIMIT_OUTCOMES:
                break
        return done

    def _note_cost(self, source: str, seconds: float) -> None:
        costs = self._costs
        previous = costs.get(source)
        if previous is None:
            if len(costs) >= _COSTS_KEPT:
                costs.clear()
            costs[source] = seconds
        elif previous != math.inf:  # a parser that must run alone stays so
            costs[source] = previous + _COST_WEIGHT * (seconds - previous)

    def check_code(self, code: str) -> _Script:
        """Raises ParserCodeTooLarge for code the sandbox will not run."""
        script = _script(code)
        if script.size > self._max_code_bytes:
            raise ParserCodeTooLarge(
                f"parser code is {script.size} bytes; the limit is {self._max_code_bytes} bytes"
            )
        return script

    def _run_locked(
        self, script: _Script, payload_json: str, device_json: str, raw: str | None
    ) -> ParserRun:
        outcome = self._run_in_realm(script, payload_json, device_json, raw)
        if outcome.bare and not script.own_realm:
            # Out of memory, the engine may throw null in place of its error; in a fresh
            # realm it has room for the error, and a script that throws null throws it again.
            self._shared = None
            outcome = self._run_in_realm(script, payload_json, device_json, raw)
        if outcome.outcome in _LIMIT_OUTCOMES:
            self._costs[script.source] = math.inf  # from now on it runs alone
        return outcome

    def _run_in_realm(
        self, script: _Script, payload_json: str, device_json: str, raw: str | None
    ) -> ParserRun:
        own_realm = script.own_realm
        try:
            realm = self._new_realm(harden=False) if own_realm else self._shared_realm()
            compiled = realm.compile(script.source)
            if isinstance(compiled, ScriptError):
                if realm.retired:
                    self._shared = None
                return ParserRun("null", [], compiled.describe(), 0.0, "error")
            started = time.perf_counter()
            result = realm.run(compiled, payload_json, device_json, raw)
            self._note_cost(script.source, time.perf_counter() - started)
        except RealmBroken as broken:  # _run_locked then lets the parser run only alone
            if not own_realm:
                self._shared = None
            return ParserRun("null", broken.console, self._limit_message(broken), 0.0, broken.kind)
        if not own_realm and not result.pristine:
            self._shared = None
        return self._outcome(result)

    def _outcome(self, result: RealmResult) -> ParserRun:
        if result.error is None:
            return ParserRun(result.payload_json, result.console, None, 0.0)
        if result.error.out_of_memory:
            self._shared = None
            return ParserRun("null", result.console, self._memory_message(), 0.0, "memory")
        run = ParserRun("null", result.console, result.error.describe(), 0.0, "error")
        run.bare = result.error.bare
        return run

    def _shared_realm(self) -> ParserRealm:
        realm = self._shared
        if realm is not None:
            self._runs_since_check += 1
            if self._runs_since_check >= _MEMORY_CHECK_EVERY:
                self._runs_since_check = 0
                if realm.memory_used() > self._memory_limit * _MEMORY_REFRESH_SHARE:
                    realm = None
        if realm is None:
            realm = self._shared = self._new_realm(harden=True)
        return realm

    def _new_realm(self, *, harden: bool) -> ParserRealm:
        return ParserRealm(
            harden=harden, time_limit=self._time_limit, memory_limit=self._memory_limit
        )

    def _limit_message(self, broken: RealmBroken) -> str:
        if broken.kind == "timeout":
            return f"timeout: parser exceeded {self._time_limit} s CPU time"
        if broken.kind == "memory":
            return self._memory_message()
        return f"internal: the parser engine stopped: {broken.detail}"

    def _memory_message(self) -> str:
        return f"memory: parser exceeded {self._memory_limit / 2**20:g} MB"


def payload_json(payload: Any) -> str:
    """The `payload` global as JSON text, for ParserSandbox.run(payload_json=...)."""
    return _to_json(payload, "payload")


def device_json(device: dict[str, Any] | None) -> str:
    """The `device` global as JSON text, for ParserSandbox.run(device_json=...)."""
    return _to_json(_device_view(device), "device")


def _device_view(device: dict[str, Any] | None) -> dict[str, Any]:
    if device is not None and "id" in device and "tags" in device and "params" in device:
        return device
    view = dict(device) if device else {}
    view.setdefault("id", None)
    view.setdefault("tags", [])
    view.setdefault("params", [])
    return view


def _to_json(value: Any, what: str) -> str:
    try:
        return _encode_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"the {what} given to the parser is not JSON-compatible: {exc}") from exc
