"""Attacks on the sandbox are contained, and no run sees what an earlier run left behind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sluice_parser import sandbox as sandbox_module
from sluice_parser.sandbox import ParserRun, ParserSandbox, RunRequest, device_json, payload_json

# Observes everything the polluters below try to change; run in a fresh sandbox it gives the
# pristine answers.
PROBE = r"""
const seen = {};
const attempt = (name, fn) => {
  try { seen[name] = fn(); } catch (e) { seen[name] = "threw " + e.name; }
};
attempt("arrayMap", () => [1, 2].map((x) => x + 1).join());
attempt("arrayIterator", () => [...[1, 2, 3]].length);
attempt("generator", () => typeof (function* () {})().extra);
attempt("objectPolluted", () => ({}).polluted);
attempt("objectToString", () => String({}));
attempt("jsonParse", () => JSON.parse("[1]")[0]);
attempt("bufferRead", () => Buffer.from([7]).readUInt8(0));
attempt("bufferAlloc", () => Buffer.alloc(2, 1).toString("hex"));
attempt("bufferStatic", () => typeof Buffer.extra);
attempt("consoleLog", () => typeof console.log);
attempt("mathMax", () => Math.max(1, 2));
attempt("dateNow", () => Date.now() > 1e12);
attempt("stringTrim", () => " a ".trim());
attempt("numberFixed", () => (1.25).toFixed(1));
attempt("errorName", () => new TypeError("x").name);
attempt("errorStack", () => String(new Error("x").stack).includes("at "));
attempt("stackLimit", () => Error.stackTraceLimit);
attempt("promiseThen", () => typeof Promise.prototype.then);
attempt("typedFill", () => new Uint8Array(2).fill(3).join());
attempt("globals", () => [typeof leaked, typeof implicitGlobal, typeof viaThis, typeof viaEval,
  typeof lexical, typeof declaredFn, typeof viaSymbol, typeof hidden]);
attempt("symbolGlobal", () => globalThis[Symbol.for("sluice")]);
attempt("implicitGlobalWorks", () => { newGlobal = 1; return typeof newGlobal; });
attempt("globalProto", () => Object.getPrototypeOf(globalThis) === Object.prototype);
attempt("globalKeys", () => Object.getOwnPropertyNames(globalThis).length);
attempt("deviceParams", () => device.params.length);
attempt("payloadItems", () => payload.length);
payload = seen;
"""

POLLUTERS = {
    # Plainly written: these scripts get a throwaway realm of their own.
    "array prototype": "Array.prototype.map = function () { return 'pwned'; };",
    "object prototype": "Object.prototype.polluted = 1;",
    "proto accessor": "({}).__proto__.polluted = 1;",
    "JSON": "JSON.parse = () => 'pwned';",
    "Buffer prototype": "Buffer.prototype.readUInt8 = () => 99; Buffer.extra = 1;",
    "console": "console.log = null;",
    "Math": "Math.max = () => -1;",
    "defineProperty on global": "Object.defineProperty(globalThis, 'hidden', { value: 1 });",
    # Written to slip past any reading of the source: the shared realm must hold.
    "aliased array prototype": "const AP = Object.getPrototypeOf([]); AP.map = () => 'pwned';",
    "aliased object prototype": "const OP = Object.getPrototypeOf({}); OP.polluted = 1; "
    "OP.toString = () => 'pwned';",
    "reflect set": "Reflect.set(Object.getPrototypeOf({}), 'polluted', 1);",
    "aliased JSON": "const J = JSON; J.parse = () => 'pwned';",
    "aliased Buffer": "const B = Buffer; B.prototype.readUInt8 = () => 99; B.extra = 1; "
    "B.alloc = null;",
    "aliased console": "const c = console; c.log = null;",
    "aliased Date": "const D = Date; D.now = () => 0;",
    "aliased Error": "const E = Error; E.prepareStackTrace = () => 'hacked'; "
    "E.stackTraceLimit = 0; "
    "const T = TypeError; T.prototype.name = 'Pwned';",
    "hidden intrinsics": "Object.getPrototypeOf([][Symbol.iterator]()).next = () => 0; "
    "Object.getPrototypeOf(function* () {}).prototype.extra = 1; "
    "const TA = Object.getPrototypeOf(Uint8Array); TA.prototype.fill = null;",
    "number prototype": "const NP = Object.getPrototypeOf(1); NP.toFixed = () => 'pwned';",
    "global leftovers": "globalThis.leaked = 1; implicitGlobal = 2; this.viaThis = 3; "
    "globalThis[Symbol.for('sluice')] = 4; "
    "(0, eval)('var viaEval = 4; let lexical = 5; function declaredFn() {}');",
    "hidden global": "Object['define' + 'Property'](globalThis, 'hidden', { value: 1 });",
    "hidden eval": "const e = globalThis['ev' + 'al']; "
    "e('var viaEval = 4; let lexical = 5; const c = 6; function declaredFn() {}');",
    "global prototype": "Object['setPrototype' + 'Of'](globalThis, { leaked: 1 });",
    "frozen global": "Object.preventExtensions(globalThis);",
    "late promise job": "Promise.resolve().then(() => { globalThis.leaked = 'late'; });",
    # QuickJS parses a body as part of a larger text: one that closes the function early
    # runs code of its own while being compiled.
    "function body injection": "}); globalThis.leaked = 1; var viaEval = 4; "
    "Promise.resolve().then(() => { implicitGlobal = 2; }); (function () {",
    "function constructor": "this.constructor.constructor('return this')().leaked = 1;",
    "device and payload objects": "device.params.push({ key: 'x' }); payload.length = 0;",
}


@pytest.fixture(scope="module")
def pristine() -> Any:
    with ParserSandbox() as box:
        run = box.run(PROBE, [{"variable": "a", "value": 1}], {"id": "d", "tags": [], "params": []})
        assert run.error is None, run.error
        return run.payload


@pytest.fixture
def sandbox() -> Iterator[ParserSandbox]:
    with ParserSandbox() as box:
        yield box


@pytest.mark.parametrize("polluter", sorted(POLLUTERS), ids=str)
def test_next_run_sees_pristine_builtins_and_globals(
    sandbox: ParserSandbox, pristine: Any, polluter: str
) -> None:
    device = {"id": "d", "tags": [], "params": []}
    item = {"variable": "a", "value": 1}
    sandbox.run(POLLUTERS[polluter], [item], device)
    after = sandbox.run(PROBE, [item], device)
    assert after.error is None, after.error
    assert after.payload == pristine
    # and again, in case the damage only shows on the second reuse
    assert sandbox.run(PROBE, [item], device).payload == pristine


@pytest.mark.parametrize("polluter", sorted(POLLUTERS), ids=str)
def test_a_run_in_a_batch_sees_pristine_builtins_and_globals(
    pristine: Any, batches: list[int], polluter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batched however long the runs take on a busy machine (what is batched is not the point).
    monkeypatch.setattr(sandbox_module, "_BATCH_MAX_RUN_SECONDS", 10.0)
    monkeypatch.setattr(sandbox_module, "BATCH_WORK_SECONDS", 10.0)
    device = {"id": "d", "tags": [], "params": []}
    item = [{"variable": "a", "value": 1}]
    probe = RunRequest(PROBE, payload_json(item), device_json(device))
    attack = RunRequest(POLLUTERS[polluter], payload_json(item), device_json(device))
    with ParserSandbox() as box:
        box.run_many([probe])
        box.run_many([attack])  # both have run once: from now on they are batched
        runs: list[ParserRun] = []
        requests = [probe, attack, probe, probe, attack, probe]
        while len(runs) < len(requests):
            runs += box.run_many(requests[len(runs) :])
    assert [runs[n].payload for n in (0, 2, 3, 5)] == [pristine] * 4
    assert max(batches) > 1


def test_pristine_probe_values(pristine: Any) -> None:
    assert pristine["arrayMap"] == "2,3"
    assert pristine["globals"] == ["undefined"] * 8
    assert pristine["implicitGlobalWorks"] == "number"
    assert pristine["errorStack"] is True


def test_aliased_pollution_does_not_even_apply_within_the_run(sandbox: ParserSandbox) -> None:
    # Built-ins of the shared realm are frozen: the assignment is ignored, as for any
    # frozen object in sloppy mode.
    code = (
        "const AP = Object.getPrototypeOf([]); AP.map = () => 'pwned'; payload = [1].map((x) => x);"
    )
    assert sandbox.run(code, []).payload == [1]


def test_plain_prototype_extension_works_like_node(sandbox: ParserSandbox) -> None:
    code = """
    Number.prototype.round2 = function () { return Math.round(this * 100) / 100; };
    Array.prototype.sum = function () { return this.reduce((a, b) => a + b, 0); };
    payload = [{ variable: "total", value: [1.005, 2.111].sum().round2() }];
    """
    assert sandbox.run(code, []).payload == [{"variable": "total", "value": 3.12}]
    assert sandbox.run("payload = [typeof [].sum, typeof (1).round2];", []).payload == [
        "undefined",
        "undefined",
    ]


def test_custom_error_classes_can_set_name_and_message(sandbox: ParserSandbox) -> None:
    # Frozen Error.prototype must not break `this.name = ...` on instances.
    code = """
    class DecodeError extends Error { constructor(m) { super(m); this.name = "DecodeError"; } }
    const e = new DecodeError("bad frame");
    e.message = "worse frame";
    const o = {};
    o.toString = () => "custom";
    payload = [e.name, e.message, String(e), String(o), new Error("x").name];
    """
    assert sandbox.run(code, []).payload == [
        "DecodeError",
        "worse frame",
        "DecodeError: worse frame",
        "custom",
        "Error",
    ]


def test_the_same_code_cannot_keep_state_on_its_function(sandbox: ParserSandbox) -> None:
    code = """
    const self = arguments.callee;
    payload = [typeof self.stash, typeof self.prototype.stash];
    self.stash = 1;
    self.prototype.stash = 1;
    """
    first = sandbox.run(code, [])
    second = sandbox.run(code, [])
    assert first.payload == second.payload == ["undefined", "undefined"]


def test_the_same_code_for_two_devices_shares_nothing(sandbox: ParserSandbox) -> None:
    code = """
    counter = (typeof counter === "number" ? counter : 0) + 1;
    payload = [{ variable: "seen", value: counter, metadata: { device: device.id } }];
    """
    one = sandbox.run(code, [], {"id": "one"})
    two = sandbox.run(code, [], {"id": "two"})
    assert one.payload == [{"variable": "seen", "value": 1, "metadata": {"device": "one"}}]
    assert two.payload == [{"variable": "seen", "value": 1, "metadata": {"device": "two"}}]


ECMASCRIPT_GLOBALS = {
    "AggregateError", "Array", "ArrayBuffer", "AsyncDisposableStack", "Atomics", "BigInt",
    "BigInt64Array", "BigUint64Array", "Boolean", "DataView", "Date", "DisposableStack", "Error",
    "EvalError", "FinalizationRegistry", "Float16Array", "Float32Array", "Float64Array", "Function",
    "Infinity", "Int16Array", "Int32Array", "Int8Array", "Iterator", "JSON", "Map", "Math", "NaN",
    "Number", "Object", "Promise", "Proxy", "RangeError", "ReferenceError", "Reflect", "RegExp",
    "Set",
    "SharedArrayBuffer", "String", "SuppressedError", "Symbol", "SyntaxError", "TypeError",
    "URIError", "Uint16Array", "Uint32Array", "Uint8Array", "Uint8ClampedArray", "WeakMap",
    "WeakRef", "WeakSet", "decodeURI", "decodeURIComponent", "encodeURI", "encodeURIComponent",
    "escape", "eval", "globalThis", "isFinite", "isNaN", "parseFloat", "parseInt", "undefined",
    "unescape",
    "InternalError",  # QuickJS's own error type
    "Symbol(Symbol.toStringTag)",
}  # fmt: skip
PARSER_GLOBALS = {
    "payload",
    "device",
    "raw_payload",
    "Buffer",
    "console",
    "atob",
    "btoa",
    "DOMException",
}


def test_global_object_holds_only_documented_globals_and_builtins(sandbox: ParserSandbox) -> None:
    code = "payload = Reflect.ownKeys(globalThis).map(String);"
    keys = set(sandbox.run(code, []).payload)
    assert keys >= PARSER_GLOBALS
    assert keys - PARSER_GLOBALS <= ECMASCRIPT_GLOBALS


def test_reaching_for_the_host_finds_nothing_more(sandbox: ParserSandbox) -> None:
    code = """
    const viaConstructor = this.constructor.constructor("return this")();
    const viaFunction = Function("return this")();
    function outer() { return (function () { return arguments.callee.caller; })(); }
    payload = [
      viaConstructor === globalThis, viaFunction === globalThis,
      typeof outer(), typeof globalThis.process, typeof globalThis.require,
      typeof globalThis.std, typeof globalThis.os, typeof import.meta,
    ];
    """
    run = sandbox.run(code, [])
    # import.meta is a syntax error outside modules: the script fails to compile cleanly.
    assert run.error is not None
    assert run.error.startswith("SyntaxError")
    run = sandbox.run(code.replace(", typeof import.meta", ""), [])
    assert run.payload == [
        True,
        True,
        "undefined",
        "undefined",
        "undefined",
        "undefined",
        "undefined",
    ]


def test_dynamic_import_fails_cleanly(sandbox: ParserSandbox) -> None:
    run = sandbox.run("const fs = await import('fs'); payload = typeof fs;", [])
    assert run.error is not None
    assert run.payload is None
    run = sandbox.run("import('fs').catch(() => {}); payload = 'sync';", [])
    assert run.payload == "sync"
    assert sandbox.run("payload = 1;", []).payload == 1


def test_a_body_that_closes_the_function_early_is_rejected(sandbox: ParserSandbox) -> None:
    run = sandbox.run("}); globalThis.escaped = 1; (function () {", [])
    assert run.error == (
        "SyntaxError: unbalanced braces: the script closes more blocks than it opens"
    )
    assert sandbox.run("payload = typeof escaped;", []).payload == "undefined"
    # braces inside strings, comments and templates are no concern
    assert sandbox.run("payload = '}' + /* } */ `}`; // }", []).payload == "}}"


def test_require_and_process_fail_with_reference_errors(sandbox: ParserSandbox) -> None:
    assert (
        sandbox.run("require('fs');", []).error == "ReferenceError: require is not defined (line 1)"
    )
    assert (
        sandbox.run("process.exit(1);", []).error
        == "ReferenceError: process is not defined (line 1)"
    )


def test_every_reachable_builtin_is_frozen(sandbox: ParserSandbox) -> None:
    code = r"""
    function errorPrototype(fail) {
      try { fail(); } catch (e) { return Object.getPrototypeOf(e); }
    }
    const roots = [Object.getPrototypeOf(function* () {}),
      Object.getPrototypeOf(async function () {}),
      Object.getPrototypeOf(async function* () {}), Object.getPrototypeOf([][Symbol.iterator]()),
      Object.getPrototypeOf(""[Symbol.iterator]()), Object.getPrototypeOf(new Map().entries()),
      Object.getPrototypeOf(new Set().values()), Object.getPrototypeOf(/x/[Symbol.matchAll]("")),
      Object.getPrototypeOf([].values().map((x) => x)), Object.getPrototypeOf(Buffer.from([1])),
      errorPrototype(() => Buffer.alloc(0).readUInt8(1)), errorPrototype(() => Buffer.alloc("x"))];
    for (const key of Reflect.ownKeys(globalThis)) {
      if (!["payload", "device", "raw_payload"].includes(key)) roots.push(globalThis[key]);
    }
    const seen = new Set([globalThis]);
    const open = [];
    while (roots.length) {
      const o = roots.pop();
      if (o === null || (typeof o !== "object" && typeof o !== "function") || seen.has(o)) continue;
      seen.add(o);
      if (!Object.isFrozen(o)) open.push(String(o.name || o.constructor?.name || o));
      roots.push(Object.getPrototypeOf(o));
      for (const k of Reflect.ownKeys(o)) {
        const d = Object.getOwnPropertyDescriptor(o, k);
        roots.push(d.value, d.get, d.set);
      }
    }
    payload = [seen.size, open];
    """
    count, unfrozen = sandbox.run(code, []).payload
    assert count > 500
    assert unfrozen == []
