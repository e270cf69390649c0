"""Sluice's Buffer (js/buffer.js) against Node's real Buffer: the same snippets, the same outcomes.

Each test builds a batch of cases in JavaScript (inputs from a seeded PRNG both engines share),
runs the batch once under /usr/bin/node and once in the sandbox, and compares every result:
values (buffers as hex), and for errors the name, code and message.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from sluice_parser.realm import loads
from sluice_parser.sandbox import ParserSandbox

NODE = shutil.which("node") or "/usr/bin/node"

pytestmark = pytest.mark.skipif(shutil.which(NODE) is None, reason="Node.js is not installed")

HARNESS = r"""
const results = [];
let seed = 0x5eed;
function rand() {
  // mulberry32: the same numbers in every engine
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randInt = (n) => Math.floor(rand() * n);
const pick = (list) => list[randInt(list.length)];
const randBytes = (n) => Array.from({ length: n }, () => randInt(256));
function randString(alphabet, n) {
  let s = "";
  for (let i = 0; i < n; i++) s += alphabet[randInt(alphabet.length)];
  return s;
}
function hexOf(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
  return s;
}
function enc(v) {
  if (v instanceof Uint8Array) {
    return { hex: hexOf(v), buffer: Buffer.isBuffer(v), ctor: v.constructor.name };
  }
  switch (typeof v) {
    case "number":
      return Object.is(v, -0) ? { num: "-0" } : Number.isFinite(v) ? v : { num: String(v) };
    case "bigint":
      return { big: String(v) };
    case "undefined":
      return { undef: true };
    case "string":
    case "boolean":
      return v;
    case "object": {
      if (v === null) return null;
      if (Array.isArray(v)) return v.map(enc);
      const out = {};
      for (const k of Object.keys(v)) out[k] = enc(v[k]);
      return out;
    }
    default:
      return { type: typeof v };
  }
}
function check(label, fn, options) {
  let outcome;
  try {
    outcome = { ok: enc(fn()) };
  } catch (e) {
    const loose = options && options.looseMessage;
    outcome = { err: [e && e.name, e && e.code, loose ? null : e && e.message] };
    if (e && e.code) outcome.err.push(String(e));
  }
  results.push([label, outcome]);
}
function show(v) {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return v + "n";
  return Object.is(v, -0) ? "-0" : String(v);
}
function withBuffer(size, fill, use) {
  // [what use(buf) returned, the buffer afterwards]
  const buf = Buffer.alloc(size, fill);
  return [use(buf), buf];
}
"""

NODE_WRAPPER = """
let payload = [];
(function () {
%s
})();
process.stdout.write(JSON.stringify(payload));
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ParserSandbox]:
    with ParserSandbox(time_limit=30.0, memory_limit=512 * 2**20, max_code_bytes=2**20) as box:
        yield box


def run_node(body: str) -> Any:
    done = subprocess.run(
        [NODE, "--no-deprecation", "-"],
        input=NODE_WRAPPER % body,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return loads(done.stdout)  # JavaScript number semantics, as the sandbox converts


def compare(sandbox: ParserSandbox, cases: str) -> int:
    """Run HARNESS + cases in both engines; assert identical results; return the case count."""
    body = HARNESS + cases + "\npayload = results;\n"
    expected = run_node(body)
    ran = sandbox.run(body, [])
    assert ran.error is None, ran.error
    actual = json.loads(json.dumps(ran.payload))
    assert len(actual) == len(expected)
    mismatches = [
        f"{label}\n   node:   {want}\n   sluice: {got}"
        for (label, want), (_, got) in zip(expected, actual, strict=True)
        if want != got
    ]
    assert not mismatches, f"{len(mismatches)} of {len(expected)} differ:\n" + "\n".join(
        mismatches[:15]
    )
    return len(expected)


def test_integer_reads_at_every_offset(sandbox: ParserSandbox) -> None:
    cases = r"""
const reads = [
  "readUInt8", "readInt8", "readUInt16BE", "readUInt16LE", "readInt16BE", "readInt16LE",
  "readUInt32BE", "readUInt32LE", "readInt32BE", "readInt32LE",
  "readBigUInt64BE", "readBigUInt64LE", "readBigInt64BE", "readBigInt64LE",
  "readUint8", "readUint16BE", "readUint32LE", "readBigUint64LE",
];
const odd = [1.5, -0.5, NaN, Infinity, -Infinity, "1", null, 2 ** 40, -(2 ** 33), -0, true, 1n,
  {}, [], undefined];
for (let n = 0; n <= 10; n++) {
  const bytes = randBytes(n);
  const buf = Buffer.from(bytes);
  for (const m of reads) {
    for (let off = -2; off <= n + 1; off++) {
      check(`${m}(${off}) of ${hexOf(bytes)}`, () => buf[m](off));
    }
    if (n === 9) for (const off of odd) check(`${m}(${show(off)})`, () => buf[m](off));
    check(`${m}() of ${hexOf(bytes)}`, () => buf[m]());
  }
}
"""
    assert compare(sandbox, cases) > 2000


def test_variable_width_reads(sandbox: ParserSandbox) -> None:
    cases = r"""
const reads = ["readUIntBE", "readUIntLE", "readIntBE", "readIntLE", "readUintBE", "readUintLE"];
for (let n = 0; n <= 8; n++) {
  const bytes = randBytes(n);
  const buf = Buffer.from(bytes);
  for (const m of reads) {
    for (const width of [0, 1, 2, 3, 4, 5, 6, 7, 1.5, "2", undefined, NaN]) {
      for (let off = -1; off <= n; off++) {
        check(`${m}(${off}, ${show(width)}) of ${hexOf(bytes)}`, () => buf[m](off, width));
      }
    }
    check(`${m}(undefined, 2)`, () => buf[m](undefined, 2));
    check(`${m}("0", 2)`, () => buf[m]("0", 2));
  }
}
"""
    assert compare(sandbox, cases) > 2000


def test_float_reads_of_random_and_special_bits(sandbox: ParserSandbox) -> None:
    cases = r"""
const specials = [
  "7f800000", "ff800000", "7fc00000", "7f800001", "00000001", "80000000", "3f800000",
  "7ff0000000000000", "fff8000000000000", "0000000000000001", "8000000000000000",
  "3ff0000000000000",
];
const reads = ["readFloatBE", "readFloatLE", "readDoubleBE", "readDoubleLE"];
for (const hex of specials) {
  const buf = Buffer.from(hex, "hex");
  for (const m of reads) {
    for (let off = -1; off <= buf.length; off++) check(`${m}(${off}) of ${hex}`, () => buf[m](off));
  }
}
for (let i = 0; i < 300; i++) {
  const bytes = randBytes(8 + randInt(4));
  const buf = Buffer.from(bytes);
  for (const m of reads) check(`${m}(${i % 4}) of ${hexOf(bytes)}`, () => buf[m](i % 4));
}
"""
    assert compare(sandbox, cases) > 1000


def test_integer_writes_with_edge_values(sandbox: ParserSandbox) -> None:
    cases = r"""
const writes = [
  ["writeUInt8", 1, 0, 255], ["writeInt8", 1, -128, 127],
  ["writeUInt16BE", 2, 0, 65535], ["writeUInt16LE", 2, 0, 65535],
  ["writeInt16BE", 2, -32768, 32767], ["writeInt16LE", 2, -32768, 32767],
  ["writeUInt32BE", 4, 0, 4294967295], ["writeUInt32LE", 4, 0, 4294967295],
  ["writeInt32BE", 4, -2147483648, 2147483647], ["writeInt32LE", 4, -2147483648, 2147483647],
  ["writeUint16LE", 2, 0, 65535], ["writeUint32BE", 4, 0, 4294967295],
];
for (const [m, width, min, max] of writes) {
  const values = [min, max, min - 1, max + 1, 0, -0, 1.7, -1.5, -0.5, max + 0.5, NaN, Infinity,
    "12", "x", null, true, min + randInt(max - min), 2 ** 40, -(2 ** 40)];
  for (const v of values) {
    for (let off = -1; off <= 6 - width + 1; off++) {
      check(`${m}(${show(v)}, ${off})`, () => withBuffer(6, 0xaa, (b) => b[m](v, off)));
    }
    check(`${m}(${show(v)}, "1")`, () => Buffer.alloc(6)[m](v, "1"));
    check(`${m}(${show(v)})`, () => withBuffer(6, 0, (b) => b[m](v)));
  }
}
"""
    assert compare(sandbox, cases) > 1500


def test_variable_width_and_bigint_writes(sandbox: ParserSandbox) -> None:
    cases = r"""
for (const m of ["writeUIntBE", "writeUIntLE", "writeIntBE", "writeIntLE"]) {
  for (const width of [1, 2, 3, 4, 5, 6, 0, 7, 1.5, undefined]) {
    const bits = Number.isInteger(width) && width >= 1 && width <= 6 ? 8 * width : 8;
    const signed = m.includes("Int") && !m.includes("UInt");
    const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
    const min = signed ? -(2 ** (bits - 1)) : 0;
    const values = [min, max, min - 1, max + 1, 0, -0.5, 1.5, -1.5, NaN, Math.floor(rand() * max)];
    for (const v of values) {
      for (const off of [0, 1, 3, -1, 9]) {
        const label = `${m}(${show(v)}, ${off}, ${show(width)})`;
        check(label, () => withBuffer(8, 0x55, (b) => b[m](v, off, width)));
      }
    }
  }
}
const big = [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n,
  -(2n ** 63n) - 1n, 0x0123456789abcdefn];
const bigWrites = [
  "writeBigUInt64BE", "writeBigUInt64LE", "writeBigInt64BE", "writeBigInt64LE", "writeBigUint64LE",
];
for (const m of bigWrites) {
  for (const v of big) {
    for (const off of [0, 1, 2, 3, -1]) {
      check(`${m}(${show(v)}, ${off})`, () => withBuffer(10, 0, (b) => b[m](v, off)));
    }
  }
  check(`${m}(5)`, () => Buffer.alloc(8)[m](5), { looseMessage: true });
}
"""
    assert compare(sandbox, cases) > 700


def test_float_writes_round_trip(sandbox: ParserSandbox) -> None:
    cases = r"""
const values = [0, -0, 1, -1, 0.1, 1 / 3, 3.4028234663852886e38, 3.5e38, 1e-45, 1e-46, 5e-324,
  Infinity, -Infinity, NaN, Number.MAX_VALUE, Number.MIN_VALUE, "2.5", null, 65504, 16777217];
for (let i = 0; i < 40; i++) values.push((rand() - 0.5) * Number(`1e${randInt(40)}`));
for (const m of ["writeFloatBE", "writeFloatLE", "writeDoubleBE", "writeDoubleLE"]) {
  const read = m.replace("write", "read");
  for (const v of values) {
    for (const off of [0, 1, 4, -1]) {
      check(`${m}(${show(v)}, ${off})`, () => {
        const [written, b] = withBuffer(12, 0, (buf) => buf[m](v, off));
        return [written, b, b[read](off)];
      });
    }
  }
}
"""
    assert compare(sandbox, cases) > 500


def test_string_encodings_decode_like_node(sandbox: ParserSandbox) -> None:
    cases = r"""
const hexChars = "0123456789abcdefABCDEF";
for (let i = 0; i < 300; i++) {
  let s = randString(hexChars, randInt(24));
  if (i % 3 === 0) {
    const junk = pick(["g", "z", " ", "-", "0x", "\u00e9", ""]);
    s = s.slice(0, randInt(s.length + 1)) + junk + randString(hexChars, randInt(6));
  }
  check(`from(${JSON.stringify(s)}, hex)`, () => Buffer.from(s, "hex"));
}
const b64Chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const noise = ["=", "==", "-", "_", " ", "\n", "*", "\u00e9", "===", "\t"];
for (let i = 0; i < 600; i++) {
  let s = randString(b64Chars, randInt(20));
  const shape = i % 6;
  if (shape === 1) s += pick(["=", "=="]);
  if (shape === 2) {
    s = s.slice(0, randInt(s.length + 1)) + pick(noise) + s.slice(randInt(s.length + 1));
  }
  if (shape === 3) s = s.replace(/\+/g, "-").replace(/\//g, "_");
  if (shape === 4) s = pick(noise) + s + pick(noise) + randString(b64Chars, randInt(5));
  for (const encoding of ["base64", "base64url"]) {
    check(`from(${JSON.stringify(s)}, ${encoding})`, () => Buffer.from(s, encoding));
    check(`byteLength(${JSON.stringify(s)}, ${encoding})`, () => Buffer.byteLength(s, encoding));
  }
}
const codePoints = [0x41, 0x7f, 0x80, 0xe9, 0x7ff, 0x800, 0x20ac, 0xd7ff, 0xe000, 0xfeff,
  0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff];
const encodings = ["utf8", "utf-8", "UTF8", "latin1", "binary", "ascii", "ucs2", "utf16le",
  undefined];
for (let i = 0; i < 300; i++) {
  let s = "";
  for (let j = randInt(12); j > 0; j--) {
    const r = rand();
    if (r < 0.1) s += String.fromCharCode(0xd800 + randInt(0x800)); // lone surrogate half
    else s += String.fromCodePoint(r < 0.5 ? pick(codePoints) : 0x20 + randInt(0x300));
  }
  for (const encoding of encodings) {
    check(`from(${JSON.stringify(s)}, ${encoding})`, () => Buffer.from(s, encoding));
  }
  check(`byteLength(${JSON.stringify(s)})`, () => Buffer.byteLength(s));
  const long = s.repeat(3) + "abcdefghijklmnopqrstuvwxyz";
  check(`from(long ${JSON.stringify(s)})`, () => Buffer.from(long));
  check(`from(long ${JSON.stringify(s)}, latin1)`, () => Buffer.from(long, "latin1"));
}
for (const encoding of ["foo", "", "Hex", "UTF-16LE", "BASE64", null, 5]) {
  check(`from("ab", ${show(encoding)})`, () => Buffer.from("ab", encoding));
  check(`from("", ${show(encoding)})`, () => Buffer.from("", encoding));
  check(`isEncoding(${show(encoding)})`, () => Buffer.isEncoding(encoding));
}
"""
    assert compare(sandbox, cases) > 6000


def test_to_string_of_random_bytes(sandbox: ParserSandbox) -> None:
    cases = r"""
// lead and continuation bytes around every UTF-8 boundary
const interesting = [0x00, 0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe2, 0xed, 0xef,
  0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0, 0x8f, 0x90];
const encodings = ["utf8", "hex", "base64", "base64url", "latin1", "binary", "ascii", "ucs2",
  "utf16le", "HEX"];
for (let i = 0; i < 500; i++) {
  const n = randInt(14);
  const bytes = Array.from({ length: n }, () => (rand() < 0.6 ? pick(interesting) : randInt(256)));
  const buf = Buffer.from(bytes);
  const hex = hexOf(bytes);
  for (const e of encodings) check(`toString(${e}) of ${hex}`, () => buf.toString(e));
  check(`toString() of ${hex}`, () => buf.toString());
  const start = randInt(n + 2) - 1;
  const end = randInt(n + 3) - 1;
  check(`toString(hex, ${start}, ${end}) of ${hex}`, () => buf.toString("hex", start, end));
  check(`toString(utf8, ${start}, ${end}) of ${hex}`, () => buf.toString("utf8", start, end));
  check(`round trip base64 ${hex}`, () => Buffer.from(buf.toString("base64"), "base64"));
  check(`round trip hex ${hex}`, () => Buffer.from(buf.toString("hex"), "hex"));
  check(`toJSON ${hex}`, () => buf.toJSON());
}
const big = Buffer.from(Array.from({ length: 20000 }, (_, i) => (i * 7) & 0xff));
check("long utf8", () => big.toString());
check("long latin1", () => big.toString("latin1"));
check("long ascii", () => big.toString("ascii"));
check("long hex round trip", () => Buffer.from(big.toString("hex"), "hex").equals(big));
const argLists = [[undefined, 1], [null], [5], ["foo"], ["utf8", "1", "3"], ["utf8", 1.7, 2.9],
  ["utf8", NaN, Infinity], ["hex", -5, 100]];
for (const args of argLists) {
  check(`toString(${args.map(show)})`, () => Buffer.from("hello").toString(...args));
}
"""
    assert compare(sandbox, cases) > 5000


def test_construction_from_arrays_objects_and_array_buffers(sandbox: ParserSandbox) -> None:
    cases = r"""
const inputs = {
  "array": () => [1, 2, 3],
  "odd numbers": () => [256, -1, 1.7, "3", null, undefined, "0x10", NaN, true],
  "empty": () => [],
  "typed 16": () => new Uint16Array([256, 1, 513]),
  "typed f32": () => new Float32Array([1.5, 300]),
  "buffer": () => Buffer.from([9, 8, 7]),
  "uint8": () => new Uint8Array([4, 5]),
  "json": () => ({ type: "Buffer", data: [1, 2, 3] }),
  "array-like": () => ({ length: 2, 0: 5, 1: 6 }),
  "bad length": () => ({ length: "2", 0: 1 }),
  "string object": () => new String("abc"),
  "number": () => 5, "null": () => null, "undefined": () => undefined, "object": () => ({ a: 1 }),
  "symbol": () => Symbol("s"), "function": () => function named() {}, "bool": () => true,
};
for (const [name, make] of Object.entries(inputs)) {
  check(`from(${name})`, () => Buffer.from(make()));
}
const ab = new Uint8Array([1, 2, 3, 4, 5, 6]).buffer;
const views = [[undefined, undefined], [2, undefined], [2, 3], [6, undefined], [7, undefined],
  [1, 9], [1, -2], ["x", undefined], [NaN, 2], [1.5, 2]];
for (const [offset, length] of views) {
  const label = `from(arrayBuffer, ${show(offset)}, ${show(length)})`;
  check(label, () => Buffer.from(ab, offset, length));
}
check("from(arrayBuffer) shares memory", () => {
  const b = Buffer.from(ab, 1, 2);
  new Uint8Array(ab)[1] = 99;
  return b;
});
check("from(buffer) copies", () => {
  const src = Buffer.from([1, 2]);
  const b = Buffer.from(src);
  src[0] = 7;
  return b;
});
for (const size of [0, 1, 5, 1.5, -1, NaN, "3", 2 ** 33, null]) {
  check(`alloc(${show(size)})`, () => Buffer.alloc(size));
  check(`allocUnsafe(${show(size)}).length`, () => Buffer.allocUnsafe(size).length);
}
const fills = [["ab", undefined], ["zz", "hex"], ["abc", "hex"], [257, undefined],
  [true, undefined], ["", undefined], ["\u00e9", undefined], ["\u00e9", "latin1"], ["ab", 5],
  ["YWJj", "base64"], [Buffer.from([1, 2]), undefined], [Buffer.alloc(0), undefined],
  [-1, undefined], [1.9, undefined], [{}, undefined], [null, undefined], ["a", "ucs2"],
  ["ab", "foo"]];
for (const [fill, encoding] of fills) {
  check(`alloc(5, ${show(fill)}, ${show(encoding)})`, () => Buffer.alloc(5, fill, encoding));
}
check("legacy new Buffer(3)", () => new Buffer(3));
check("legacy Buffer('ab')", () => Buffer("ab"));
check("legacy Buffer(2, 'x')", () => Buffer(2, "x"));
check("of", () => Buffer.of(1, 2, 300));
check("map keeps Buffer", () => Buffer.from([1, 2]).map((x) => x * 2));
check("instanceof", () => [
  Buffer.from("a") instanceof Buffer, Buffer.from("a") instanceof Uint8Array,
  Buffer.isBuffer(new Uint8Array(1)), Buffer.isBuffer("a"),
]);
check("prototype of Buffer", () => Object.getPrototypeOf(Buffer) === Uint8Array);
"""
    assert compare(sandbox, cases) > 60


def test_slice_subarray_share_memory(sandbox: ParserSandbox) -> None:
    cases = r"""
const args = [undefined, 0, 1, 3, -1, -3, 10, -10, 1.7, "2", NaN, Infinity, -Infinity, null];
for (const m of ["slice", "subarray"]) {
  for (const a of args) {
    for (const b of args) {
      check(`${m}(${show(a)}, ${show(b)})`, () => {
        const buf = Buffer.from([1, 2, 3, 4, 5, 6]);
        const part = buf[m](a, b);
        if (part.length > 0) part[0] = 0xee;
        return [part, buf, part.byteOffset - buf.byteOffset];
      });
    }
  }
}
"""
    assert compare(sandbox, cases) > 300


def test_concat_compare_equals_search(sandbox: ParserSandbox) -> None:
    cases = r"""
const pool = [[], [1], [1, 2], [1, 2, 3], [2, 1], [1, 2, 3, 1, 2], [0, 255, 0]];
for (const a of pool) {
  for (const b of pool) {
    const x = Buffer.from(a), y = Buffer.from(b);
    check(`compare ${a}|${b}`, () => [Buffer.compare(x, y), x.compare(y), x.equals(y)]);
    check(`indexOf ${a}|${b}`, () => [
      x.indexOf(y), x.lastIndexOf(y), x.includes(y), x.indexOf(y, 1), x.lastIndexOf(y, -2),
    ]);
    check(`concat ${a}|${b}`, () => [
      Buffer.concat([x, y]), Buffer.concat([x, y], 2), Buffer.concat([x, y], 6),
    ]);
  }
}
const hay = Buffer.from("abcabcé\u0000abc");
const needles = ["c", "abc", "", "zz", "é", 99, 355, -157, "63", Buffer.from("bc"),
  new Uint8Array([0])];
for (const needle of needles) {
  for (const off of [undefined, 0, 2, -2, -100, 100, "hex", 1.5, NaN, null]) {
    check(`indexOf(${show(needle)}, ${show(off)})`, () => [
      hay.indexOf(needle, off), hay.lastIndexOf(needle, off), hay.includes(needle, off),
    ]);
  }
}
check("indexOf hex", () => hay.indexOf("6263", 0, "hex"));
check("indexOf({})", () => hay.indexOf({}));
check("indexOf foo enc", () => hay.indexOf("a", 0, "foo"));
check("concat not array", () => Buffer.concat("x"));
check("concat non buffer", () => Buffer.concat([[1, 2]]));
check("concat empty", () => Buffer.concat([]));
check("concat bad length", () => Buffer.concat([Buffer.from([1])], -1));
check("compare bad", () => Buffer.compare(1, Buffer.from("a")));
check("equals bad", () => Buffer.from("a").equals([97]));
const s = Buffer.from([1, 2, 3, 4]), t = Buffer.from([2, 3, 4, 5]);
const ranges = [[0, 2, 1, 3], [1, 3, 0, 2], [5], [0, 9], [0, 1, 5], [0, 1, 0, 9], [2, 1],
  [0, 0, 0, 0], ["1"], [-1]];
for (const range of ranges) check(`compare range ${range}`, () => s.compare(t, ...range));
"""
    assert compare(sandbox, cases) > 250


def test_fill_copy_write_swap(sandbox: ParserSandbox) -> None:
    cases = r"""
const fills = [0, 1, 257, -1, 1.9, "a", "ab", "é", "", "zz", Buffer.from([7, 8]), true, null, {}];
const ranges = [[], [1], [1, 3], [-1], [0, 9], [1.5], [2, 1], ["hex"], [0, 4, "latin1"],
  [0, 4, "foo"], [0, 4, 5], [3, "utf8"], [null]];
for (const v of fills) {
  for (const r of ranges) {
    check(`fill(${show(v)}, ${r.map(show)})`, () => Buffer.alloc(4, 0xcc).fill(v, ...r));
  }
}
const copies = [[0], [1, 1], [0, 2, 4], [0, 0, 9], [-1], [0, -1], [0, 0, -1], [3, 1],
  [0, 1.5, 3.7], ["1", "1"], [100], [0, 4, 2]];
for (const args of copies) {
  const source = Buffer.from([1, 2, 3, 4, 5]);
  check(`copy(${args})`, () => withBuffer(4, 0, (dst) => source.copy(dst, ...args)));
}
check("copy overlapping", () => {
  const b = Buffer.from([1, 2, 3, 4, 5]);
  return [b.copy(b, 1, 0), b];
});
check("copy bad target", () => Buffer.from([1]).copy([1]));
const strings = ["abc", "héllo", "€€", "abcd", "YWJj", "0102zz", "\ud800x", ""];
const forms = [[], [1], [1, 2], ["hex"], [0, "hex"], [1, 1, "hex"], [0, "base64"],
  [0, 2, "latin1"], [0, "ucs2"], [5], [-1], [1.5], [0, 9], [0, -1], ["foo"], [0, 3, "ascii"],
  [2, "utf8"]];
for (const str of strings) {
  for (const f of forms) {
    const label = `write(${JSON.stringify(str)}, ${f.map(show)})`;
    check(label, () => withBuffer(4, 0, (b) => b.write(str, ...f)));
  }
}
check("write(5)", () => Buffer.alloc(4).write(5));
check("write(5, 'hex')", () => Buffer.alloc(4).write(5, "hex"));
for (const n of [0, 2, 3, 4, 8, 16]) {
  for (const m of ["swap16", "swap32", "swap64"]) {
    check(`${m} of ${n}`, () => Buffer.from(randBytes(n))[m]());
  }
}
check("reverse", () => Buffer.from([1, 2, 3]).reverse());
check("parent/offset", () => {
  const b = Buffer.from([1, 2, 3]).subarray(1);
  return [typeof b.parent, b.offset === b.byteOffset];
});
check("byteLength of views", () => [
  Buffer.byteLength(new Uint16Array(3)),
  Buffer.byteLength(new ArrayBuffer(5)),
  Buffer.byteLength(""),
]);
check("byteLength(5)", () => Buffer.byteLength(5));
check("enumerable prototype methods", () => {
  const keys = [];
  for (const k in Buffer.from([1])) keys.push(k);
  return keys.includes("readUInt8") && keys.includes("0");
});
check("error toString", () => {
  try {
    Buffer.alloc(1).readUInt8(5);
  } catch (e) {
    return [String(e), Object.keys(e), e instanceof RangeError];
  }
});
"""
    assert compare(sandbox, cases) > 300
