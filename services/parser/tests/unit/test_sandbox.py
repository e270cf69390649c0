"""The parser sandbox as its callers see it: globals, output conversion, console, errors, limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sluice_parser.sandbox import (
    MAX_CODE_BYTES,
    ParserCodeTooLarge,
    ParserRun,
    ParserSandbox,
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ParserSandbox]:
    with ParserSandbox() as box:
        yield box


def ok(run: ParserRun) -> Any:
    assert run.error is None, run.error
    return run.payload


def error_of(run: ParserRun) -> str:
    assert run.error is not None, run.payload
    return run.error


ITEM = {"variable": "payload", "value": "0109611395", "metadata": {"mqtt_topic": "sensors/1"}}


# ------------------------------------------------------------------------------ globals


def test_script_reads_and_reassigns_payload(sandbox: ParserSandbox) -> None:
    code = 'payload = payload.concat([{ variable: "n", value: payload.length }]);'
    assert ok(sandbox.run(code, [ITEM])) == [ITEM, {"variable": "n", "value": 1}]


def test_untouched_payload_comes_back_as_given(sandbox: ParserSandbox) -> None:
    items = [ITEM, {"variable": "rssi", "value": -87.5, "time": "2024-01-01T00:00:00Z"}]
    assert ok(sandbox.run("// nothing to do", items)) == items


def test_device_is_visible_with_tags_and_params(sandbox: ParserSandbox) -> None:
    device = {
        "id": "dev1",
        "tags": [{"key": "site", "value": "north"}],
        "params": [{"key": "offset", "value": "1.5", "sent": False}],
    }
    code = """
    const offset = device.params.find((p) => p.key === "offset");
    payload = [device.id, device.tags[0].value, Number(offset.value), offset.sent];
    """
    assert ok(sandbox.run(code, [], device)) == ["dev1", "north", 1.5, False]


def test_missing_device_is_an_empty_one(sandbox: ParserSandbox) -> None:
    code = "payload = [device.id, device.tags.length, device.params.length];"
    assert ok(sandbox.run(code, [])) == [None, 0, 0]
    assert ok(sandbox.run(code, [], {"id": "x"})) == ["x", 0, 0]


def test_raw_payload_is_a_buffer_or_null(sandbox: ParserSandbox) -> None:
    code = """
    payload = raw_payload === null
      ? null
      : [Buffer.isBuffer(raw_payload), raw_payload.toString("hex")];
    """
    assert ok(sandbox.run(code, [], raw_payload=b"\x00\xff\x10 ok")) == [True, "00ff10206f6b"]
    assert ok(sandbox.run(code, [])) is None


def test_globals_a_parser_may_use(sandbox: ParserSandbox) -> None:
    code = """
    payload = [typeof Buffer, typeof console.log, typeof console.debug, typeof console.error,
               typeof console.info, typeof console.warn,
               typeof payload, typeof device, typeof atob];
    """
    assert ok(sandbox.run(code, [])) == ["function"] * 6 + ["object", "object", "function"]


@pytest.mark.parametrize(
    "name",
    [
        "require",
        "process",
        "module",
        "exports",
        "setTimeout",
        "setInterval",
        "fetch",
        "std",
        "os",
        "performance",
    ],
)
def test_host_facilities_are_absent(sandbox: ParserSandbox, name: str) -> None:
    assert ok(sandbox.run(f"payload = typeof {name};", [])) == "undefined"


def test_top_level_return_and_var_and_function_declarations(sandbox: ParserSandbox) -> None:
    code = """
    var total = 0;
    function add(x) { total += x; }
    [1, 2, 3].forEach(add);
    payload = [{ variable: "total", value: total }];
    return;
    payload = "not reached";
    """
    assert ok(sandbox.run(code, [])) == [{"variable": "total", "value": 6}]


def test_eval_sees_the_callers_variables(sandbox: ParserSandbox) -> None:
    code = """
    function f() { var local = 5; return eval("local + 1"); }
    payload = [f(), eval("2 * 3")];
    """
    assert ok(sandbox.run(code, [])) == [6, 6]


def test_top_level_await(sandbox: ParserSandbox) -> None:
    code = (
        "const value = await Promise.resolve(41); payload = [{ variable: 'v', value: value + 1 }];"
    )
    assert ok(sandbox.run(code, [])) == [{"variable": "v", "value": 42}]


def test_await_that_never_settles_is_an_error(sandbox: ParserSandbox) -> None:
    run = sandbox.run("await new Promise(() => {}); payload = 1;", [])
    assert run.error is not None
    assert "await" in run.error


def test_rejected_top_level_await_is_the_error(sandbox: ParserSandbox) -> None:
    run = sandbox.run("\nawait Promise.reject(new TypeError('nope'));", [])
    assert run.error == "TypeError: nope (line 2)"


# ------------------------------------------------------------------- output conversion


def test_numbers_keep_their_javascript_meaning(sandbox: ParserSandbox) -> None:
    code = "payload = [1, -0, 2.5, 1e21, 2 ** 53 - 1, 2 ** 53 + 2, NaN, -Infinity, 0.1 + 0.2];"
    got = ok(sandbox.run(code, []))
    assert got == [1, 0, 2.5, 1e21, 2**53 - 1, float(2**53 + 2), None, None, 0.30000000000000004]
    assert [type(v) for v in got[:6]] == [int, int, float, float, int, float]


def test_bigint_becomes_its_decimal_text(sandbox: ParserSandbox) -> None:
    code = """
    const counter = Buffer.from("ffffffffffffffff", "hex").readBigUInt64BE();
    payload = [{ variable: "counter", value: counter }];
    """
    assert ok(sandbox.run(code, [])) == [{"variable": "counter", "value": "18446744073709551615"}]


def test_undefined_fields_are_dropped_and_key_order_kept(sandbox: ParserSandbox) -> None:
    code = "payload = [{ z: 1, variable: 'a', unit: undefined, value: 2, fn() {} }, undefined];"
    got = ok(sandbox.run(code, []))
    assert got == [{"z": 1, "variable": "a", "value": 2}, None]
    assert list(got[0]) == ["z", "variable", "value"]


def test_non_array_payloads_are_returned_as_they_are(sandbox: ParserSandbox) -> None:
    assert ok(sandbox.run("payload = { variable: 'one', value: true };", [])) == {
        "variable": "one",
        "value": True,
    }
    assert ok(sandbox.run("payload = 'text';", [])) == "text"
    assert ok(sandbox.run("payload = undefined;", [])) is None
    # payload cannot be deleted (nor redefined): it stays what it was
    assert ok(sandbox.run("delete globalThis.payload;", [1])) == [1]


def test_cyclic_payload_is_an_error(sandbox: ParserSandbox) -> None:
    run = sandbox.run("const a = []; a.push(a); payload = a;", [])
    assert run.payload is None
    assert error_of(run).startswith("TypeError: payload is not JSON-serialisable")


def test_payload_nested_deeper_than_python_converts_is_an_error(sandbox: ParserSandbox) -> None:
    run = sandbox.run("let v = 1; for (let i = 0; i < 5000; i++) v = [v]; payload = v;", [])
    assert run.payload is None
    assert run.error is not None


def test_strings_round_trip_unicode(sandbox: ParserSandbox) -> None:
    items = [{"variable": "name", "value": 'Zürich ☃ 😀 \u0000 "quoted"'}]
    assert ok(sandbox.run("payload = payload;", items)) == items


# ------------------------------------------------------------------------------ console


def test_console_lines_carry_their_level(sandbox: ParserSandbox) -> None:
    code = """
    console.log("hello", 1, { a: [1, "x"] });
    console.debug("dbg");
    console.info("%s has %d items", "payload", payload.length);
    console.warn(Buffer.from("ab"));
    console.error(new RangeError("boom"));
    """
    run = sandbox.run(code, [ITEM])
    assert run.console == [
        "log: hello 1 { a: [ 1, 'x' ] }",
        "debug: dbg",
        "info: payload has 1 items",
        "warn: <Buffer 61 62>",
        "error: RangeError: boom",
    ]


def test_console_output_is_bounded(sandbox: ParserSandbox) -> None:
    run = sandbox.run("for (let i = 0; i < 150; i++) console.log('x'.repeat(5000));", [])
    assert len(run.console) == 101
    assert all(len(line) <= 1100 for line in run.console)
    assert run.console[-1] == "log: … 50 more console lines not kept"


def test_console_lines_survive_an_error(sandbox: ParserSandbox) -> None:
    run = sandbox.run("console.log('before'); null.x;", [])
    assert run.console == ["log: before"]
    assert run.error is not None


def test_console_is_not_carried_to_the_next_run(sandbox: ParserSandbox) -> None:
    sandbox.run("console.log('first');", [])
    assert sandbox.run("payload = 1;", []).console == []


# ------------------------------------------------------------------------------- errors


def test_runtime_error_names_type_message_and_line(sandbox: ParserSandbox) -> None:
    code = "const a = {};\nconst b = a.missing;\nconst c = b.x;\n"
    run = sandbox.run(code, [])
    assert run.payload is None
    assert run.error == "TypeError: cannot read property 'x' of undefined (line 3)"


def test_error_thrown_by_buffer_points_at_the_callers_line(sandbox: ParserSandbox) -> None:
    code = "const b = Buffer.from('01', 'hex');\n\nb.readUInt16BE(0);"
    run = sandbox.run(code, [])
    assert run.error == (
        "RangeError [ERR_BUFFER_OUT_OF_BOUNDS]: "
        "Attempt to access memory outside buffer bounds (line 3)"
    )


def test_error_inside_a_helper_function_reports_the_helpers_line(sandbox: ParserSandbox) -> None:
    code = "function decode(x) {\n  return x.value.toFixed(2);\n}\ndecode({});"
    run = sandbox.run(code, [])
    assert error_of(run).endswith("(line 2)")


def test_syntax_error(sandbox: ParserSandbox) -> None:
    run = sandbox.run("const ok = 1;\nconst broken = ;\n", [])
    assert run.error is not None
    assert run.error.startswith("SyntaxError: ")
    assert run.error.endswith("(line 2)")


def test_thrown_values_that_are_not_errors(sandbox: ParserSandbox) -> None:
    assert sandbox.run("throw 'boom';", []).error == "Uncaught boom"
    assert sandbox.run("throw { message: 'custom' };", []).error == "Uncaught custom"
    # The line is where the error object was created, as in a JavaScript stack trace.
    custom = """class BadFrame extends Error {
      constructor(m) { super(m); this.name = "BadFrame"; }
    }
    throw new BadFrame("short");"""
    assert sandbox.run(custom, []).error == "BadFrame: short (line 2)"


def test_script_can_catch_its_own_errors(sandbox: ParserSandbox) -> None:
    code = """
    try { Buffer.from("zz", "hex").readUInt8(0); } catch (e) {
      payload = [{ variable: "parse_error", value: e.message, metadata: { code: e.code } }];
    }
    """
    assert ok(sandbox.run(code, [])) == [
        {
            "variable": "parse_error",
            "value": "Attempt to access memory outside buffer bounds",
            "metadata": {"code": "ERR_BUFFER_OUT_OF_BOUNDS"},
        }
    ]


# ------------------------------------------------------------------------------- limits


def test_code_size_is_limited_in_utf8_bytes() -> None:
    with ParserSandbox(max_code_bytes=10) as box:
        assert box.run("payload=1;", []).payload == 1
        with pytest.raises(ParserCodeTooLarge):
            box.run("payload='é';", [])  # 11 bytes in UTF-8
    with ParserSandbox() as box, pytest.raises(ParserCodeTooLarge, match="65537 bytes"):
        box.run("/" * (MAX_CODE_BYTES + 1), [])


# The limit is CPU time: on a busy machine wall-clock time runs longer, so the tests bound the
# CPU this process spent (and the wall clock only loosely, against a hang).


def test_infinite_loop_times_out_and_the_next_run_works() -> None:
    with ParserSandbox(time_limit=0.3) as box:
        cpu, wall = time.process_time(), time.perf_counter()
        run = box.run("console.log('spinning'); while (true) {}", [])
        assert time.process_time() - cpu < 0.45
        assert time.perf_counter() - wall < 5
        assert run.error == "timeout: parser exceeded 0.3 s CPU time"
        assert run.console == ["log: spinning"]
        assert box.run("payload = 'fine';", []).payload == "fine"


def test_default_time_limit_stops_a_loop_within_about_a_second(sandbox: ParserSandbox) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    run = sandbox.run("try { for (;;) {} } finally { for (;;) {} }", [])
    assert time.process_time() - cpu < 1.2
    assert time.perf_counter() - wall < 10
    assert run.error == "timeout: parser exceeded 1.0 s CPU time"
    assert ok(sandbox.run("payload = 1;", [])) == 1


def test_memory_bomb_is_stopped_and_the_sandbox_recovers() -> None:
    with ParserSandbox(memory_limit=32 * 2**20) as box:
        run = box.run("const keep = []; for (;;) keep.push(new Array(100000).fill(1.5));", [])
        assert run.error == "memory: parser exceeded 32 MB"
        run = box.run("let s = 'x'; for (;;) s += s;", [])
        assert run.error is not None
        assert box.run("payload = [1, 2, 3];", []).payload == [1, 2, 3]


def test_deep_recursion_is_an_error_not_a_crash(sandbox: ParserSandbox) -> None:
    run = sandbox.run("function down(n) { return down(n + 1) + 1; }\ndown(0);", [])
    assert error_of(run).startswith("RangeError: Maximum call stack size exceeded")
    run = sandbox.run(
        "let v = '1'; for (let i = 0; i < 200000; i++) v = '[' + v + ']'; payload = JSON.parse(v);",
        [],
    )
    assert run.error is not None
    assert ok(sandbox.run("payload = 'still here';", [])) == "still here"


def test_async_job_flood_is_bounded_by_the_time_limit() -> None:
    with ParserSandbox(time_limit=0.3) as box:
        cpu = time.process_time()
        run = box.run("async function spin() { for (;;) await null; }\nawait spin();", [])
        assert time.process_time() - cpu < 0.6
        assert run.error == "timeout: parser exceeded 0.3 s CPU time"
        assert box.run("payload = 2;", []).payload == 2


def test_duration_is_measured(sandbox: ParserSandbox) -> None:
    run = sandbox.run("let x = 0; for (let i = 0; i < 100000; i++) x += i; payload = x;", [])
    assert run.duration_ms > 0


def test_input_must_be_json_compatible(sandbox: ParserSandbox) -> None:
    with pytest.raises(ValueError, match="payload"):
        sandbox.run("", [{"value": float("nan")}])
    with pytest.raises(ValueError, match="payload"):
        sandbox.run("", [{"value": object()}])


def test_closed_sandbox_refuses_to_run() -> None:
    box = ParserSandbox()
    box.close()
    with pytest.raises(RuntimeError):
        box.run("", [])


def test_concurrent_runs_from_threads_are_serialised_and_correct(sandbox: ParserSandbox) -> None:
    code = "payload = payload.map((x) => x * 2);"
    errors: list[str] = []

    def worker(seed: int) -> None:
        for i in range(50):
            got = sandbox.run(code, [seed, i]).payload
            if got != [seed * 2, i * 2]:
                errors.append(f"{seed}/{i}: {got}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
