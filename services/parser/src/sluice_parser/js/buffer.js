// Sluice's implementation of the part of Node's Buffer API that payload decoders use.
//
// Written for QuickJS from Node's documented behaviour (v20): same results, same error
// names, codes and messages for the same input. Buffers are Uint8Array instances with
// Buffer.prototype; unlike Node there is no shared allocation pool, so `buf.buffer` holds
// exactly the buffer's bytes and allocUnsafe() returns zeroed memory.
//
// realm.py evaluates node_errors.js, encodings.js, buffer_numbers.js and this file in one
// function scope and calls createBuffer() once per realm.

function createBuffer() {
  "use strict";

  const MAX_LENGTH = 2 ** 32; // what Node 20 reports as its size limit on 64-bit hosts
  const errors = createNodeErrors(MAX_LENGTH);
  const {
    describe,
    nodeError,
    outOfRange,
    plainOutOfRange,
    invalidArgType,
    invalidArgValue,
    outOfBounds,
    unknownEncoding,
    notAString,
    expectOffset,
  } = errors;
  const { ENCODINGS, encodingOf, encodeBytes, hexPair } = createEncodings();
  const utf8 = ENCODINGS.utf8;
  const TypedArrayProto = Object.getPrototypeOf(Uint8Array.prototype);
  const typedArrayFill = TypedArrayProto.fill;
  const typedArraySet = TypedArrayProto.set;
  const getTag = Object.getOwnPropertyDescriptor(TypedArrayProto, Symbol.toStringTag).get;
  const isUint8Array = (value) => getTag.call(value) === "Uint8Array";
  const isArrayBuffer = (value) => {
    const tag = Object.prototype.toString.call(value);
    return tag === "[object ArrayBuffer]" || tag === "[object SharedArrayBuffer]";
  };

  // ------------------------------------------------------------- the types

  class FastBuffer extends Uint8Array {
    // eslint-disable-next-line no-useless-constructor
    constructor(a, b, c) {
      super(a, b, c);
    }
  }

  function Buffer(arg, encodingOrOffset, length) {
    // Legacy constructor (deprecated in Node, still used by old decoders).
    if (typeof arg === "number") {
      if (typeof encodingOrOffset === "string") {
        throw invalidArgType("string", "of type string", arg);
      }
      return Buffer.alloc(arg);
    }
    return Buffer.from(arg, encodingOrOffset, length);
  }
  Object.defineProperty(Buffer, "prototype", { value: FastBuffer.prototype, writable: false });
  Object.defineProperty(FastBuffer.prototype, "constructor", {
    value: Buffer,
    writable: true,
    configurable: true,
  });
  Object.setPrototypeOf(Buffer, Uint8Array);
  Buffer.poolSize = 8192;

  function encodeString(string, ops) {
    const bytes = encodeBytes(string, ops);
    return new FastBuffer(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  // ------------------------------------------------------------ construction

  function fromArrayLike(source) {
    const n = source.length;
    const buf = new FastBuffer(n > 0 ? n : 0);
    for (let i = 0; i < buf.length; i++) buf[i] = source[i];
    return buf;
  }

  function fromArrayBuffer(arrayBuffer, byteOffset, length) {
    if (byteOffset === undefined) byteOffset = 0;
    else {
      byteOffset = +byteOffset;
      if (Number.isNaN(byteOffset)) byteOffset = 0;
    }
    const room = arrayBuffer.byteLength - byteOffset;
    if (room < 0) throw outOfBounds("offset");
    if (length === undefined) length = room;
    else {
      length = +length;
      if (length > 0) {
        if (length > room) throw outOfBounds("length");
      } else length = 0;
    }
    return new FastBuffer(arrayBuffer, byteOffset, length);
  }

  function fromString(string, encoding) {
    let ops = ENCODINGS.utf8;
    if (typeof encoding === "string" && encoding.length !== 0) {
      ops = encodingOf(encoding);
      if (ops === undefined) throw unknownEncoding(encoding);
    }
    if (string.length === 0) return new FastBuffer(0);
    return encodeString(string, ops);
  }

  function fromObject(object) {
    if (object.length !== undefined || isArrayBuffer(object.buffer)) {
      if (typeof object.length !== "number") return new FastBuffer(0);
      return fromArrayLike(object);
    }
    if (object.type === "Buffer" && Array.isArray(object.data)) return fromArrayLike(object.data);
    return undefined;
  }

  const FROM_EXPECTED =
    "of type string or an instance of Buffer, ArrayBuffer, or Array or an Array-like Object";

  Buffer.from = function from(value, encodingOrOffset, length) {
    if (typeof value === "string") return fromString(value, encodingOrOffset);
    if (typeof value === "object" && value !== null) {
      if (isArrayBuffer(value)) return fromArrayBuffer(value, encodingOrOffset, length);
      const primitive = typeof value.valueOf === "function" ? value.valueOf() : undefined;
      if (
        primitive != null &&
        primitive !== value &&
        (typeof primitive === "string" || typeof primitive === "object")
      ) {
        return Buffer.from(primitive, encodingOrOffset, length);
      }
      const made = fromObject(value);
      if (made !== undefined) return made;
      if (typeof value[Symbol.toPrimitive] === "function") {
        const text = value[Symbol.toPrimitive]("string");
        if (typeof text === "string") return fromString(text, encodingOrOffset);
      }
    }
    throw invalidArgType("first argument", FROM_EXPECTED, value);
  };

  function expectSize(size) {
    if (typeof size !== "number") throw invalidArgType("size", "of type number", size);
    if (!(size >= 0 && size <= MAX_LENGTH)) throw outOfRange("size", `>= 0 && <= ${MAX_LENGTH}`, size);
  }

  Buffer.alloc = function alloc(size, fill, encoding) {
    expectSize(size);
    const buf = new FastBuffer(size);
    if (fill !== undefined && fill !== 0 && buf.length > 0) fillBuffer(buf, fill, 0, buf.length, encoding);
    return buf;
  };

  Buffer.allocUnsafe = function allocUnsafe(size) {
    expectSize(size);
    return new FastBuffer(size);
  };

  Buffer.allocUnsafeSlow = function allocUnsafeSlow(size) {
    expectSize(size);
    return new FastBuffer(size);
  };

  Buffer.isBuffer = function isBuffer(value) {
    return value instanceof Buffer;
  };

  Buffer.isEncoding = function isEncoding(encoding) {
    return typeof encoding === "string" && encoding.length !== 0 && encodingOf(encoding) !== undefined;
  };

  Buffer.byteLength = function byteLength(string, encoding) {
    if (typeof string !== "string") {
      if (ArrayBuffer.isView(string) || isArrayBuffer(string)) return string.byteLength;
      throw invalidArgType("string", "of type string or an instance of Buffer or ArrayBuffer", string);
    }
    if (string.length === 0) return 0;
    const ops = encoding ? encodingOf(encoding) : undefined;
    return (ops || ENCODINGS.utf8).length(string);
  };

  function copyBytes(source, target, targetStart, sourceStart, sourceEnd) {
    if (sourceEnd - sourceStart > target.length - targetStart) {
      sourceEnd = sourceStart + target.length - targetStart;
    }
    let count = sourceEnd - sourceStart;
    const available = source.length - sourceStart;
    if (count > available) count = available;
    if (count <= 0) return 0;
    const part = new Uint8Array(source.buffer, source.byteOffset + sourceStart, count);
    typedArraySet.call(target, part, targetStart);
    return count;
  }

  Buffer.concat = function concat(list, totalLength) {
    if (!Array.isArray(list)) throw invalidArgType("list", "an instance of Array", list);
    if (list.length === 0) return new FastBuffer(0);
    if (totalLength === undefined) {
      totalLength = 0;
      for (let i = 0; i < list.length; i++) {
        if (list[i].length) totalLength += list[i].length;
      }
    } else expectOffset(totalLength, "length");
    const out = new FastBuffer(totalLength);
    let pos = 0;
    for (let i = 0; i < list.length; i++) {
      const part = list[i];
      if (!isUint8Array(part)) {
        throw invalidArgType(`list[${i}]`, "an instance of Buffer or Uint8Array", part);
      }
      pos += copyBytes(part, out, pos, 0, part.length);
    }
    return out;
  };

  function compareBytes(a, aStart, aEnd, b, bStart, bEnd) {
    const n = Math.min(aEnd - aStart, bEnd - bStart);
    for (let i = 0; i < n; i++) {
      const x = a[aStart + i];
      const y = b[bStart + i];
      if (x !== y) return x < y ? -1 : 1;
    }
    const la = aEnd - aStart;
    const lb = bEnd - bStart;
    return la < lb ? -1 : la > lb ? 1 : 0;
  }

  Buffer.compare = function compare(buf1, buf2) {
    if (!isUint8Array(buf1)) throw invalidArgType("buf1", "an instance of Buffer or Uint8Array", buf1);
    if (!isUint8Array(buf2)) throw invalidArgType("buf2", "an instance of Buffer or Uint8Array", buf2);
    if (buf1 === buf2) return 0;
    return compareBytes(buf1, 0, buf1.length, buf2, 0, buf2.length);
  };

  // ------------------------------------------------------------- fill / copy

  function fillBuffer(buf, value, offset, end, encoding) {
    if (typeof value === "string") {
      if (offset === undefined || typeof offset === "string") {
        encoding = offset;
        offset = 0;
        end = buf.length;
      } else if (typeof end === "string") {
        encoding = end;
        end = buf.length;
      }
      let ops;
      if (encoding === undefined || encoding === null || encoding === "") ops = ENCODINGS.utf8;
      else if (typeof encoding === "string") ops = encodingOf(encoding);
      if (ops === undefined) {
        if (typeof encoding !== "string") throw invalidArgType("encoding", "of type string", encoding);
        throw unknownEncoding(encoding);
      }
      if (value.length === 0) value = 0;
      else if (value.length === 1) {
        const code = value.charCodeAt(0);
        if (ops === ENCODINGS.utf8 && code < 128) value = code;
        else if (ops === ENCODINGS.latin1) value = code;
      }
      if (typeof value === "string") {
        const bytes = encodeString(value, ops);
        if (bytes.length === 0) throw invalidArgValue("value", describe(value));
        value = bytes;
      }
    }
    if (offset === undefined) {
      offset = 0;
      end = buf.length;
    } else {
      expectOffset(offset, "offset");
      if (end === undefined) end = buf.length;
      else expectOffset(end, "end", buf.length);
      if (offset >= end) return buf;
    }
    if (typeof value === "number") {
      typedArrayFill.call(buf, value, offset, end);
      return buf;
    }
    if (ArrayBuffer.isView(value)) {
      if (value.byteLength === 0) {
        throw invalidArgValue("value", isUint8Array(value) ? inspectBuffer(value) : describe(value));
      }
      const pattern = new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice();
      for (let i = offset, j = 0; i < end; i++, j++) {
        if (j === pattern.length) j = 0;
        buf[i] = pattern[j];
      }
      return buf;
    }
    // Anything else is converted to an unsigned 32-bit integer and its low byte used.
    typedArrayFill.call(buf, (+value >>> 0) & 255, offset, end);
    return buf;
  }

  // ------------------------------------------------------------------ search

  function startPosition(length, offset, needleLength, forward) {
    // Where a search starts, or -1 when nothing can match (Node's rules).
    if (offset < 0) {
      if (offset + length >= 0) return length + offset;
      if (forward || needleLength === 0) return 0;
      return -1;
    }
    if (offset + needleLength <= length) return offset;
    if (needleLength === 0) return length;
    if (forward) return -1;
    return length - 1;
  }

  function searchBytes(buf, needle, start, forward) {
    const n = needle.length;
    const last = buf.length - n;
    if (forward) {
      for (let i = start; i <= last; i++) {
        let j = 0;
        while (j < n && buf[i + j] === needle[j]) j++;
        if (j === n) return i;
      }
    } else {
      for (let i = Math.min(start, last); i >= 0; i--) {
        let j = 0;
        while (j < n && buf[i + j] === needle[j]) j++;
        if (j === n) return i;
      }
    }
    return -1;
  }

  function search(buf, value, byteOffset, encoding, forward) {
    if (typeof byteOffset === "string") {
      encoding = byteOffset;
      byteOffset = undefined;
    } else if (byteOffset > 0x7fffffff) byteOffset = 0x7fffffff;
    else if (byteOffset < -0x80000000) byteOffset = -0x80000000;
    byteOffset = +byteOffset;
    if (Number.isNaN(byteOffset)) byteOffset = forward ? 0 : buf.length;
    byteOffset = Math.trunc(byteOffset);
    let needle;
    if (typeof value === "number") needle = [(value >>> 0) & 255];
    else {
      const ops = encoding === undefined ? ENCODINGS.utf8 : encodingOf(encoding);
      if (typeof value === "string") {
        if (ops === undefined) throw unknownEncoding(encoding);
        needle = encodeString(value, ops);
      } else if (isUint8Array(value)) needle = value;
      else {
        throw invalidArgType(
          "value",
          "one of type number or string or an instance of Buffer or Uint8Array",
          value,
        );
      }
    }
    const start = startPosition(buf.length, byteOffset, needle.length, forward);
    if (needle.length === 0) return start;
    if (start < 0 || buf.length === 0) return -1;
    return searchBytes(buf, needle, start, forward);
  }

  // ---------------------------------------------------------- instance methods

  const proto = Buffer.prototype;
  const methods = {};

  methods.toString = function toString(encoding, start, end) {
    const length = this.length;
    if (arguments.length === 0) return utf8.slice(this, 0, length);
    if (start <= 0) start = 0;
    else if (start >= length) return "";
    else start = Math.trunc(start) || 0;
    if (end === undefined || end > length) end = length;
    else end = Math.trunc(end) || 0;
    if (end <= start) return "";
    if (encoding === undefined) return utf8.slice(this, start, end);
    const ops = encodingOf(encoding);
    if (ops === undefined) throw unknownEncoding(encoding);
    return ops.slice(this, start, end);
  };
  methods.toLocaleString = methods.toString;

  methods.toJSON = function toJSON() {
    const data = new Array(this.length);
    for (let i = 0; i < this.length; i++) data[i] = this[i];
    return { type: "Buffer", data };
  };

  methods.equals = function equals(otherBuffer) {
    if (!isUint8Array(otherBuffer)) {
      throw invalidArgType("otherBuffer", "an instance of Buffer or Uint8Array", otherBuffer);
    }
    if (this === otherBuffer) return true;
    if (this.length !== otherBuffer.length) return false;
    return compareBytes(this, 0, this.length, otherBuffer, 0, otherBuffer.length) === 0;
  };

  methods.compare = function compare(target, targetStart, targetEnd, sourceStart, sourceEnd) {
    if (!isUint8Array(target)) throw invalidArgType("target", "an instance of Buffer or Uint8Array", target);
    if (arguments.length === 1) return compareBytes(this, 0, this.length, target, 0, target.length);
    if (targetStart === undefined) targetStart = 0;
    else expectOffset(targetStart, "targetStart");
    if (targetEnd === undefined) targetEnd = target.length;
    else expectOffset(targetEnd, "targetEnd", target.length);
    if (sourceStart === undefined) sourceStart = 0;
    else expectOffset(sourceStart, "sourceStart");
    if (sourceEnd === undefined) sourceEnd = this.length;
    else expectOffset(sourceEnd, "sourceEnd", this.length);
    if (sourceStart >= sourceEnd) return targetStart >= targetEnd ? 0 : -1;
    if (targetStart >= targetEnd) return 1;
    if (sourceStart > this.length) throw plainOutOfRange("sourceStart");
    if (targetStart > target.length) throw plainOutOfRange("targetStart");
    return compareBytes(this, sourceStart, sourceEnd, target, targetStart, targetEnd);
  };

  methods.indexOf = function indexOf(value, byteOffset, encoding) {
    return search(this, value, byteOffset, encoding, true);
  };
  methods.lastIndexOf = function lastIndexOf(value, byteOffset, encoding) {
    return search(this, value, byteOffset, encoding, false);
  };
  methods.includes = function includes(value, byteOffset, encoding) {
    return search(this, value, byteOffset, encoding, true) !== -1;
  };

  methods.fill = function fill(value, offset, end, encoding) {
    return fillBuffer(this, value, offset, end, encoding);
  };

  function toInteger(value, fallback) {
    value = +value;
    if (!Number.isNaN(value) && value >= Number.MIN_SAFE_INTEGER && value <= Number.MAX_SAFE_INTEGER) {
      return value % 1 === 0 ? value : Math.floor(value);
    }
    return fallback;
  }

  methods.copy = function copy(target, targetStart, sourceStart, sourceEnd) {
    if (!isUint8Array(this)) throw invalidArgType("source", "an instance of Buffer or Uint8Array", this);
    if (!isUint8Array(target)) throw invalidArgType("target", "an instance of Buffer or Uint8Array", target);
    if (targetStart === undefined) targetStart = 0;
    else {
      targetStart = toInteger(targetStart, 0);
      if (targetStart < 0) throw outOfRange("targetStart", ">= 0", targetStart);
    }
    if (sourceStart === undefined) sourceStart = 0;
    else {
      sourceStart = toInteger(sourceStart, 0);
      if (sourceStart < 0 || sourceStart > this.length) {
        throw outOfRange("sourceStart", `>= 0 && <= ${this.length}`, sourceStart);
      }
    }
    if (sourceEnd === undefined) sourceEnd = this.length;
    else {
      sourceEnd = toInteger(sourceEnd, 0);
      if (sourceEnd < 0) throw outOfRange("sourceEnd", ">= 0", sourceEnd);
    }
    if (targetStart >= target.length || sourceStart >= sourceEnd) return 0;
    return copyBytes(this, target, targetStart, sourceStart, sourceEnd);
  };

  methods.write = function write(string, offset, length, encoding) {
    if (offset === undefined) {
      if (typeof string !== "string") throw notAString();
      return utf8.write(this, string, 0, this.length);
    }
    if (length === undefined && typeof offset === "string") {
      encoding = offset;
      length = this.length;
      offset = 0;
    } else {
      expectOffset(offset, "offset", this.length);
      const remaining = this.length - offset;
      if (length === undefined) length = remaining;
      else if (typeof length === "string") {
        encoding = length;
        length = remaining;
      } else {
        expectOffset(length, "length", this.length);
        if (length > remaining) length = remaining;
      }
    }
    let ops = ENCODINGS.utf8;
    if (encoding) {
      ops = encodingOf(encoding);
      if (ops === undefined) throw unknownEncoding(encoding);
    }
    if (typeof string !== "string") throw notAString();
    return ops.write(this, string, offset, length);
  };

  function sliceIndex(value, length) {
    value = Math.trunc(value);
    if (value === 0 || Number.isNaN(value)) return 0;
    if (value < 0) {
      value += length;
      return value > 0 ? value : 0;
    }
    return value < length ? value : length;
  }

  methods.slice = function slice(start, end) {
    const length = this.length;
    const from = sliceIndex(start, length);
    const to = end === undefined ? length : sliceIndex(end, length);
    return new FastBuffer(this.buffer, this.byteOffset + from, to > from ? to - from : 0);
  };
  methods.subarray = methods.slice;

  function swapper(width) {
    return function () {
      if (this.length % width !== 0) {
        throw nodeError(
          RangeError,
          "ERR_INVALID_BUFFER_SIZE",
          `Buffer size must be a multiple of ${width * 8}-bits`,
        );
      }
      for (let i = 0; i < this.length; i += width) {
        for (let a = i, b = i + width - 1; a < b; a++, b--) {
          const t = this[a];
          this[a] = this[b];
          this[b] = t;
        }
      }
      return this;
    };
  }
  methods.swap16 = swapper(2);
  methods.swap32 = swapper(4);
  methods.swap64 = swapper(8);

  addNumberMethods(methods, errors);

  // Node's lower-case aliases.
  for (const name of Object.keys(methods)) {
    if (name.includes("UInt")) methods[name.replace("UInt", "Uint")] = methods[name];
  }

  // The per-encoding helpers old code calls directly (buf.hexSlice(), buf.utf8Write(...)).
  function spanIndex(value, fallback, length) {
    if (value === undefined) return fallback;
    const n = Math.trunc(+value) || 0;
    if (n < 0 || n > length) throw plainOutOfRange("index");
    return n;
  }
  for (const [name, ops] of Object.entries(ENCODINGS)) {
    const prefix = name === "utf16le" ? "ucs2" : name;
    methods[prefix + "Slice"] = function (start, end) {
      const from = spanIndex(start, 0, this.length);
      const to = spanIndex(end, this.length, this.length);
      return to > from ? ops.slice(this, from, to) : "";
    };
    methods[prefix + "Write"] = function (string, offset, length) {
      if (typeof string !== "string") throw notAString();
      const at = spanIndex(offset, 0, this.length);
      const room = this.length - at;
      const limit = length === undefined ? room : Math.min(room, Math.max(0, Math.trunc(+length) || 0));
      return ops.write(this, string, at, limit);
    };
  }

  function inspectBuffer(buf) {
    // "<Buffer 01 02 ... 3 more bytes>" as Node's console shows a Buffer.
    const shown = Math.min(buf.length, 50);
    let text = "<Buffer ";
    for (let i = 0; i < shown; i++) text += (i ? " " : "") + hexPair[buf[i]];
    const more = buf.length - shown;
    if (more > 0) text += ` ... ${more} more byte${more > 1 ? "s" : ""}`;
    return text + ">";
  }
  methods.inspect = function inspect() {
    return inspectBuffer(this);
  };

  // Node's Buffer.prototype methods are plain assignments, hence enumerable.
  for (const name of Object.keys(methods)) {
    Object.defineProperty(proto, name, {
      value: methods[name],
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
  for (const [name, get] of [
    ["parent", function () { return this instanceof Buffer ? this.buffer : undefined; }],
    ["offset", function () { return this instanceof Buffer ? this.byteOffset : undefined; }],
  ]) {
    Object.defineProperty(proto, name, { get, enumerable: true, configurable: true });
  }

  Buffer.of = function of(...items) {
    return fromArrayLike(items);
  };

  Buffer.copyBytesFrom = function copyBytesFrom(view, offset, length) {
    if (!ArrayBuffer.isView(view) || view instanceof DataView) {
      throw invalidArgType("view", "an instance of TypedArray", view);
    }
    const size = view.BYTES_PER_ELEMENT;
    const start = offset === undefined ? 0 : Math.min(Math.max(0, Math.trunc(offset)), view.length);
    const stop = length === undefined ? view.length : Math.min(view.length, start + Math.max(0, Math.trunc(length)));
    const bytes = new Uint8Array(view.buffer, view.byteOffset + start * size, (stop - start) * size);
    return fromArrayLike(bytes);
  };

  // Objects user code can reach that are not reachable from the global object: the realm's
  // hardening step must freeze them too.
  const internals = errors.prototypes;

  return { Buffer, inspectBuffer, internals };
}
