// Node-style errors for Sluice's Buffer: the names, codes and messages Node 20 gives
// (RangeError [ERR_OUT_OF_RANGE]: The value of "offset" is out of range. ...).
//
// Loaded with buffer.js into one function scope (see realm.py); createNodeErrors() runs once
// per realm.

function createNodeErrors(maxLength) {
  "use strict";

  const isInteger = Number.isInteger;

  function describe(value) {
    // Node's util.inspect for the primitive cases error messages show.
    switch (typeof value) {
      case "string": {
        let quote = "'";
        if (value.includes("'")) {
          if (!value.includes('"')) quote = '"';
          else if (!value.includes("`") && !value.includes("${")) quote = "`";
        }
        let body = "";
        for (let i = 0; i < value.length; i++) {
          const ch = value[i];
          const code = value.charCodeAt(i);
          if (ch === quote || ch === "\\") body += "\\" + ch;
          else if (ch === "\n") body += "\\n";
          else if (ch === "\t") body += "\\t";
          else if (ch === "\r") body += "\\r";
          else if (ch === "\b") body += "\\b";
          else if (ch === "\f") body += "\\f";
          else if (code < 0x20 || code === 0x7f) {
            body += "\\x" + code.toString(16).toUpperCase().padStart(2, "0");
          } else body += ch;
        }
        return quote + body + quote;
      }
      case "number":
        return Object.is(value, -0) ? "-0" : String(value);
      case "bigint":
        return String(value) + "n";
      case "symbol":
        return value.toString();
      default:
        return String(value);
    }
  }

  function groupThousands(text) {
    // 1234567 -> 1_234_567, applied to the decimal text as Node does (sign kept in front).
    const sign = text[0] === "-" ? "-" : "";
    let rest = sign ? text.slice(1) : text;
    let grouped = "";
    while (rest.length > 3) {
      grouped = "_" + rest.slice(-3) + grouped;
      rest = rest.slice(0, -3);
    }
    return sign + rest + grouped;
  }

  function receivedRange(value) {
    if (typeof value === "number" && isInteger(value) && Math.abs(value) > 2 ** 32) {
      return groupThousands(String(value));
    }
    if (typeof value === "bigint") {
      const text = String(value);
      const big = value > 2n ** 32n || value < -(2n ** 32n);
      return (big ? groupThousands(text) : text) + "n";
    }
    return describe(value);
  }

  function receivedType(value) {
    if (value === null || value === undefined) return " Received " + value;
    if (typeof value === "function") return " Received function " + value.name;
    if (typeof value === "object") {
      const ctor = value.constructor;
      if (ctor && ctor.name) return " Received an instance of " + ctor.name;
      return " Received [Object: null prototype] {}";
    }
    let shown = describe(value);
    if (shown.length > 28) shown = shown.slice(0, 25) + "...";
    return " Received type " + typeof value + " (" + shown + ")";
  }

  const codedPrototypes = new Map();
  function codedPrototype(Base) {
    // Node's own errors print as "RangeError [ERR_X]: message".
    let proto = codedPrototypes.get(Base);
    if (!proto) {
      proto = Object.create(Base.prototype, {
        toString: {
          value: function toString() {
            return `${this.name} [${this.code}]: ${this.message}`;
          },
          writable: true,
          configurable: true,
        },
      });
      codedPrototypes.set(Base, proto);
    }
    return proto;
  }

  function withCode(error, code) {
    Object.defineProperty(error, "code", {
      value: code,
      writable: true,
      enumerable: true,
      configurable: true,
    });
    return error;
  }

  function nodeError(Base, code, message) {
    const error = new Base(message);
    Object.setPrototypeOf(error, codedPrototype(Base));
    return withCode(error, code);
  }

  const outOfRange = (name, range, value) =>
    nodeError(
      RangeError,
      "ERR_OUT_OF_RANGE",
      `The value of "${name}" is out of range. It must be ${range}. Received ${receivedRange(value)}`,
    );
  const invalidArgType = (name, expected, value) =>
    nodeError(
      TypeError,
      "ERR_INVALID_ARG_TYPE",
      `The ${name.endsWith(" argument") ? name : `"${name}" argument`} must be ${expected}.` +
        receivedType(value),
    );
  const outOfBounds = (name) =>
    nodeError(
      RangeError,
      "ERR_BUFFER_OUT_OF_BOUNDS",
      name ? `"${name}" is outside of buffer bounds` : "Attempt to access memory outside buffer bounds",
    );
  const unknownEncoding = (encoding) =>
    nodeError(TypeError, "ERR_UNKNOWN_ENCODING", `Unknown encoding: ${encoding}`);
  const invalidArgValue = (name, shown) =>
    nodeError(TypeError, "ERR_INVALID_ARG_VALUE", `The argument '${name}' is invalid. Received ${shown}`);

  function expectNumber(value, name) {
    if (typeof value !== "number") throw invalidArgType(name, "of type number", value);
  }

  function expectOffset(value, name, max = maxLength) {
    // Node's validateInteger(value, name, 0, max)
    if (typeof value !== "number") throw invalidArgType(name, "of type number", value);
    if (!isInteger(value)) throw outOfRange(name, "an integer", value);
    if (value < 0 || value > max) throw outOfRange(name, `>= 0 && <= ${max}`, value);
  }

  function boundsError(value, last, name) {
    // An access at `value` failed; `last` is the highest valid start offset.
    if (Math.floor(value) !== value) {
      expectNumber(value, name || "offset");
      throw outOfRange(name || "offset", "an integer", value);
    }
    if (last < 0) throw outOfBounds();
    throw outOfRange(name || "offset", `>= ${name ? 1 : 0} and <= ${last}`, value);
  }

  function plainOutOfRange(name) {
    return withCode(new RangeError(`The value of "${name}" is out of range.`), "ERR_OUT_OF_RANGE");
  }

  function notAString() {
    // Raised by Node's C++ layer: carries a code but prints like a plain TypeError.
    return withCode(new TypeError("argument must be a string"), "ERR_INVALID_ARG_TYPE");
  }

  return {
    describe,
    nodeError,
    outOfRange,
    plainOutOfRange,
    invalidArgType,
    invalidArgValue,
    outOfBounds,
    unknownEncoding,
    notAString,
    expectNumber,
    expectOffset,
    boundsError,
    // reachable by scripts (an error's prototype) yet not from the global object
    prototypes: [codedPrototype(RangeError), codedPrototype(TypeError)],
  };
}
