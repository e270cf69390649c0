// The numeric reads and writes of Sluice's Buffer (readUInt16BE, writeFloatLE, readUIntBE,
// readBigInt64LE, ...), with Node's argument checks and its order of checking.
//
// Loaded with buffer.js into one function scope (see realm.py).

function addNumberMethods(methods, errors) {
  "use strict";

  const { outOfRange, invalidArgType, expectNumber, boundsError } = errors;

  function checkSpan(buf, offset, width) {
    expectNumber(offset, "offset");
    if (buf[offset] === undefined || buf[offset + width - 1] === undefined) {
      boundsError(offset, buf.length - width);
    }
  }

  methods.readUInt8 = function readUInt8(offset = 0) {
    if (typeof offset !== "number") throw invalidArgType("offset", "of type number", offset);
    const v = this[offset];
    if (v === undefined) boundsError(offset, this.length - 1);
    return v;
  };
  methods.readInt8 = function readInt8(offset = 0) {
    if (typeof offset !== "number") throw invalidArgType("offset", "of type number", offset);
    const v = this[offset];
    if (v === undefined) boundsError(offset, this.length - 1);
    return v > 127 ? v - 256 : v;
  };

  methods.readUInt16BE = function readUInt16BE(offset = 0) {
    if (typeof offset !== "number") throw invalidArgType("offset", "of type number", offset);
    const a = this[offset];
    const b = this[offset + 1];
    if (a === undefined || b === undefined) boundsError(offset, this.length - 2);
    return a * 256 + b;
  };
  methods.readUInt16LE = function readUInt16LE(offset = 0) {
    if (typeof offset !== "number") throw invalidArgType("offset", "of type number", offset);
    const a = this[offset];
    const b = this[offset + 1];
    if (a === undefined || b === undefined) boundsError(offset, this.length - 2);
    return b * 256 + a;
  };
  methods.readInt16BE = function readInt16BE(offset = 0) {
    if (typeof offset !== "number") throw invalidArgType("offset", "of type number", offset);
    const a = this[offset];
    const b = this[offset + 1];
    if (a === undefined || b === undefined) boundsError(offset, this.length - 2);
    const v = a * 256 + b;
    return v > 0x7fff ? v - 0x10000 : v;
  };
  methods.readInt16LE = function readInt16LE(offset = 0) {
    if (typeof offset !== "number") throw invalidArgType("offset", "of type number", offset);
    const a = this[offset];
    const b = this[offset + 1];
    if (a === undefined || b === undefined) boundsError(offset, this.length - 2);
    const v = b * 256 + a;
    return v > 0x7fff ? v - 0x10000 : v;
  };

  function readBE(buf, offset, width) {
    checkSpan(buf, offset, width);
    let v = 0;
    for (let i = 0; i < width; i++) v = v * 256 + buf[offset + i];
    return v;
  }
  function readLE(buf, offset, width) {
    checkSpan(buf, offset, width);
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = v * 256 + buf[offset + i];
    return v;
  }
  const signed = (v, width) => (v >= 2 ** (8 * width - 1) ? v - 2 ** (8 * width) : v);

  methods.readUInt32BE = function readUInt32BE(offset = 0) {
    if (typeof offset !== "number") throw invalidArgType("offset", "of type number", offset);
    const a = this[offset];
    const d = this[offset + 3];
    if (a === undefined || d === undefined) boundsError(offset, this.length - 4);
    return a * 0x1000000 + this[offset + 1] * 0x10000 + this[offset + 2] * 0x100 + d;
  };
  methods.readUInt32LE = function readUInt32LE(offset = 0) {
    if (typeof offset !== "number") throw invalidArgType("offset", "of type number", offset);
    const a = this[offset];
    const d = this[offset + 3];
    if (a === undefined || d === undefined) boundsError(offset, this.length - 4);
    return d * 0x1000000 + this[offset + 2] * 0x10000 + this[offset + 1] * 0x100 + a;
  };
  methods.readInt32BE = function readInt32BE(offset = 0) {
    return methods.readUInt32BE.call(this, offset) | 0;
  };
  methods.readInt32LE = function readInt32LE(offset = 0) {
    return methods.readUInt32LE.call(this, offset) | 0;
  };

  function variableWidth(byteLength) {
    // Node accepts 1..6 bytes for readUIntBE & co.
    if (byteLength === 1 || byteLength === 2 || byteLength === 3 || byteLength === 4 || byteLength === 5 || byteLength === 6) {
      return byteLength;
    }
    return boundsError(byteLength, 6, "byteLength");
  }

  methods.readUIntBE = function readUIntBE(offset, byteLength) {
    const width = variableWidth(byteLength);
    return readBE(this, offset, width);
  };
  methods.readUIntLE = function readUIntLE(offset, byteLength) {
    const width = variableWidth(byteLength);
    return readLE(this, offset, width);
  };
  methods.readIntBE = function readIntBE(offset, byteLength) {
    const width = variableWidth(byteLength);
    return signed(readBE(this, offset, width), width);
  };
  methods.readIntLE = function readIntLE(offset, byteLength) {
    const width = variableWidth(byteLength);
    return signed(readLE(this, offset, width), width);
  };

  methods.readBigUInt64BE = function readBigUInt64BE(offset = 0) {
    checkSpan(this, offset, 8);
    const hi = this[offset] * 0x1000000 + this[offset + 1] * 0x10000 + this[offset + 2] * 0x100 + this[offset + 3];
    const lo = this[offset + 4] * 0x1000000 + this[offset + 5] * 0x10000 + this[offset + 6] * 0x100 + this[offset + 7];
    return (BigInt(hi) << 32n) + BigInt(lo);
  };
  methods.readBigUInt64LE = function readBigUInt64LE(offset = 0) {
    checkSpan(this, offset, 8);
    const lo = this[offset + 3] * 0x1000000 + this[offset + 2] * 0x10000 + this[offset + 1] * 0x100 + this[offset];
    const hi = this[offset + 7] * 0x1000000 + this[offset + 6] * 0x10000 + this[offset + 5] * 0x100 + this[offset + 4];
    return (BigInt(hi) << 32n) + BigInt(lo);
  };
  methods.readBigInt64BE = function readBigInt64BE(offset = 0) {
    return BigInt.asIntN(64, methods.readBigUInt64BE.call(this, offset));
  };
  methods.readBigInt64LE = function readBigInt64LE(offset = 0) {
    return BigInt.asIntN(64, methods.readBigUInt64LE.call(this, offset));
  };

  // -------------------------------------------------------------- float reads

  const scratch = new ArrayBuffer(8);
  const scratchBytes = new Uint8Array(scratch);
  const scratchFloat = new Float32Array(scratch);
  const scratchDouble = new Float64Array(scratch);
  const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

  function loadScratch(buf, offset, width, bigEndian) {
    checkSpan(buf, offset, width);
    const reverse = bigEndian === littleEndianHost;
    for (let i = 0; i < width; i++) scratchBytes[reverse ? width - 1 - i : i] = buf[offset + i];
  }
  function storeScratch(buf, offset, width, bigEndian) {
    const reverse = bigEndian === littleEndianHost;
    for (let i = 0; i < width; i++) buf[offset + i] = scratchBytes[reverse ? width - 1 - i : i];
    return offset + width;
  }

  methods.readFloatBE = function readFloatBE(offset = 0) {
    loadScratch(this, offset, 4, true);
    return scratchFloat[0];
  };
  methods.readFloatLE = function readFloatLE(offset = 0) {
    loadScratch(this, offset, 4, false);
    return scratchFloat[0];
  };
  methods.readDoubleBE = function readDoubleBE(offset = 0) {
    loadScratch(this, offset, 8, true);
    return scratchDouble[0];
  };
  methods.readDoubleLE = function readDoubleLE(offset = 0) {
    loadScratch(this, offset, 8, false);
    return scratchDouble[0];
  };

  // ------------------------------------------------------------------- writes

  function rangeText(min, max, width) {
    // How Node states the accepted range of a write of `width` bytes.
    if (width > 4) {
      const n = typeof min === "bigint" ? "n" : "";
      const bits = width * 8;
      if (min === 0 || min === 0n) return `>= 0${n} and < 2${n} ** ${bits}${n}`;
      return `>= -(2${n} ** ${bits - 1}${n}) and < 2${n} ** ${bits - 1}${n}`;
    }
    return `>= ${min} and <= ${max}`;
  }

  function checkedWrite(buf, value, offset, width, min, max) {
    // Value first, then the offset, in Node's order for writes wider than a byte.
    if (value > max || value < min) throw outOfRange("value", rangeText(min, max, width), value);
    checkSpan(buf, offset, width);
  }

  function writeBE(buf, value, offset, width) {
    let v = value < 0 ? value + 2 ** (8 * width) : value;
    for (let i = width - 1; i >= 0; i--) {
      buf[offset + i] = v % 256;
      v = Math.floor(v / 256);
    }
    return offset + width;
  }
  function writeLE(buf, value, offset, width) {
    let v = value < 0 ? value + 2 ** (8 * width) : value;
    for (let i = 0; i < width; i++) {
      buf[offset + i] = v % 256;
      v = Math.floor(v / 256);
    }
    return offset + width;
  }

  function storeWide(buf, value, offset, width, bigEndian) {
    // 40/48-bit stores: the low 32 bits come from the value as a uint32, the rest from
    // floor(value / 2**32); this is how Node treats fractional negative values too.
    let low = value >>> 0;
    let high = Math.floor(value * 2 ** -32);
    for (let i = 0; i < width; i++) {
      let byte;
      if (i < 4) {
        byte = low & 255;
        low >>>= 8;
      } else {
        byte = high & 255;
        high >>>= 8;
      }
      buf[bigEndian ? offset + width - 1 - i : offset + i] = byte;
    }
    return offset + width;
  }

  function byteStore(min, max) {
    return function (buf, value, offset) {
      value = +value;
      expectNumber(offset, "offset");
      if (value > max || value < min) throw outOfRange("value", rangeText(min, max, 1), value);
      if (buf[offset] === undefined) boundsError(offset, buf.length - 1);
      buf[offset] = value;
      return offset + 1;
    };
  }

  function wideStore(width, isSigned, bigEndian) {
    const min = isSigned ? -(2 ** (8 * width - 1)) : 0;
    const max = isSigned ? 2 ** (8 * width - 1) - 1 : 2 ** (8 * width) - 1;
    const store = bigEndian ? writeBE : writeLE;
    return function (buf, value, offset) {
      value = +value;
      checkedWrite(buf, value, offset, width, min, max);
      if (width > 4) return storeWide(buf, value, offset, width, bigEndian);
      // NaN is stored as 0, fractions are truncated (as a typed-array store would).
      return store(buf, Number.isNaN(value) ? 0 : Math.trunc(value), offset, width);
    };
  }

  // stores[width + "u" | "s" + "be" | "le"](buf, value, offset)
  const stores = {};
  for (const width of [1, 2, 3, 4, 5, 6]) {
    for (const isSigned of [false, true]) {
      for (const bigEndian of [false, true]) {
        stores[`${width}${isSigned ? "s" : "u"}${bigEndian ? "be" : "le"}`] =
          width === 1
            ? byteStore(isSigned ? -0x80 : 0, isSigned ? 0x7f : 0xff)
            : wideStore(width, isSigned, bigEndian);
      }
    }
  }
  function fixedWriter(key) {
    const store = stores[key];
    return function (value, offset = 0) {
      return store(this, value, offset);
    };
  }
  methods.writeUInt8 = fixedWriter("1ube");
  methods.writeInt8 = fixedWriter("1sbe");
  methods.writeUInt16BE = fixedWriter("2ube");
  methods.writeUInt16LE = fixedWriter("2ule");
  methods.writeInt16BE = fixedWriter("2sbe");
  methods.writeInt16LE = fixedWriter("2sle");
  methods.writeUInt32BE = fixedWriter("4ube");
  methods.writeUInt32LE = fixedWriter("4ule");
  methods.writeInt32BE = fixedWriter("4sbe");
  methods.writeInt32LE = fixedWriter("4sle");

  function variableWriter(suffix) {
    // No default offset here: Node rejects a missing one for the variable-width forms.
    return function (value, offset, byteLength) {
      const width = variableWidth(byteLength);
      return stores[width + suffix](this, value, offset);
    };
  }
  methods.writeUIntBE = variableWriter("ube");
  methods.writeUIntLE = variableWriter("ule");
  methods.writeIntBE = variableWriter("sbe");
  methods.writeIntLE = variableWriter("sle");

  function bigWriter(isSigned, bigEndian) {
    const min = isSigned ? -(2n ** 63n) : 0n;
    const max = isSigned ? 2n ** 63n - 1n : 2n ** 64n - 1n;
    return function (value, offset = 0) {
      checkedWrite(this, value, offset, 8, min, max);
      const lo = Number(value & 0xffffffffn);
      const hi = Number((value >> 32n) & 0xffffffffn);
      if (bigEndian) {
        writeBE(this, hi, offset, 4);
        writeBE(this, lo, offset + 4, 4);
      } else {
        writeLE(this, lo, offset, 4);
        writeLE(this, hi, offset + 4, 4);
      }
      return offset + 8;
    };
  }
  methods.writeBigUInt64BE = bigWriter(false, true);
  methods.writeBigUInt64LE = bigWriter(false, false);
  methods.writeBigInt64BE = bigWriter(true, true);
  methods.writeBigInt64LE = bigWriter(true, false);

  function floatWriter(width, bigEndian) {
    return function (value, offset = 0) {
      value = +value;
      checkSpan(this, offset, width);
      if (width === 4) scratchFloat[0] = value;
      else scratchDouble[0] = value;
      return storeScratch(this, offset, width, bigEndian);
    };
  }
  methods.writeFloatBE = floatWriter(4, true);
  methods.writeFloatLE = floatWriter(4, false);
  methods.writeDoubleBE = floatWriter(8, true);
  methods.writeDoubleLE = floatWriter(8, false);
}
