// The console a payload parser logs to: log/info/debug/warn/error (and trace, dir, table),
// formatted like Node's util.format for what decoders print, kept for the Live Inspector as
// "level: text" lines, at most 100 of them and 1024 characters each.
//
// Loaded with prelude.js into one function scope (see realm.py).

function createConsole(Buffer, inspectBuffer) {
  "use strict";

  const jsonStringify = JSON.stringify;
  const StringCtor = String;
  const FunctionCtor = Function;
  const apply = Reflect.apply;
  const stringSlice = String.prototype.slice;
  const arrayPush = Array.prototype.push;

  const MAX_LINES = 100;
  const MAX_LINE_CHARS = 1024;
  let lines = [];
  let dropped = 0;

  const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

  function quote(text) {
    // Single quotes unless the text contains one and no double quote, as Node prints strings.
    const mark = text.includes("'") && !text.includes('"') ? '"' : "'";
    const escaped = text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
    return mark + (mark === "'" ? escaped.replace(/'/g, "\\'") : escaped) + mark;
  }

  function inspect(value, depth, seen) {
    // A compact, single-line take on Node's util.inspect for what decoders log.
    switch (typeof value) {
      case "string":
        return depth === 0 ? value : quote(value);
      case "number":
        return Object.is(value, -0) ? "-0" : StringCtor(value);
      case "bigint":
        return StringCtor(value) + "n";
      case "symbol":
        return value.toString();
      case "undefined":
        return "undefined";
      case "boolean":
        return value ? "true" : "false";
      case "function": {
        const source = FunctionCtor.prototype.toString.call(value);
        if (source.startsWith("class")) return value.name ? `[class ${value.name}]` : "[class (anonymous)]";
        return value.name ? `[Function: ${value.name}]` : "[Function (anonymous)]";
      }
      default:
        break;
    }
    if (value === null) return "null";
    if (value instanceof Buffer) return inspectBuffer(value);
    if (value instanceof Error) {
      const head = `${value.name}: ${value.message}`;
      return depth === 0 ? head : `[${head}]`;
    }
    if (value instanceof Date) return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
    if (value instanceof RegExp) return StringCtor(value);
    if (seen.includes(value)) return "[Circular]";
    const isArray = Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
    if (depth > 2) return isArray ? "[Array]" : "[Object]";
    seen.push(value);
    const parts = [];
    if (isArray) {
      const shown = Math.min(value.length, 100);
      for (let i = 0; i < shown; i++) parts.push(inspect(value[i], depth + 1, seen));
      if (value.length > shown) parts.push(`... ${value.length - shown} more items`);
    } else if (value instanceof Map || value instanceof Set) {
      for (const entry of value) {
        parts.push(
          value instanceof Map
            ? `${inspect(entry[0], depth + 1, seen)} => ${inspect(entry[1], depth + 1, seen)}`
            : inspect(entry, depth + 1, seen),
        );
        if (parts.length >= 100) break;
      }
    } else {
      const keys = Object.keys(value);
      for (let i = 0; i < keys.length && i < 100; i++) {
        const key = keys[i];
        parts.push(`${IDENTIFIER.test(key) ? key : quote(key)}: ${inspect(value[key], depth + 1, seen)}`);
      }
      if (keys.length > 100) parts.push(`... ${keys.length - 100} more properties`);
    }
    seen.pop();
    let prefix = "";
    if (value instanceof Map) prefix = `Map(${value.size}) `;
    else if (value instanceof Set) prefix = `Set(${value.size}) `;
    else if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
      prefix = `${value.constructor.name}(${value.length}) `;
    }
    if (parts.length === 0) return prefix + (isArray ? "[]" : "{}");
    return isArray
      ? `${prefix}[ ${parts.join(", ")} ]`
      : `${prefix}{ ${parts.join(", ")} }`;
  }

  function format(args) {
    // util.format: printf-style directives in a leading string, the rest space-separated.
    let out = "";
    let next = 0;
    if (typeof args[0] === "string" && args.length > 1) {
      const template = args[0];
      next = 1;
      let i = 0;
      while (i < template.length) {
        const ch = template[i];
        if (ch !== "%" || i + 1 === template.length) {
          out += ch;
          i++;
          continue;
        }
        const directive = template[i + 1];
        if (directive === "%") {
          out += "%";
        } else if ("sdifjoOc".includes(directive) && next < args.length) {
          const arg = args[next++];
          if (directive === "s") out += typeof arg === "string" ? arg : inspect(arg, 1, []);
          else if (directive === "d") out += typeof arg === "bigint" ? `${arg}n` : inspect(Number(arg), 1, []);
          else if (directive === "i") out += typeof arg === "bigint" ? `${arg}n` : inspect(parseInt(arg), 1, []);
          else if (directive === "f") out += inspect(parseFloat(arg), 1, []);
          else if (directive === "j") out += jsonStringify(arg);
          else if (directive !== "c") out += inspect(arg, 1, []);
        } else {
          out += "%" + directive;
        }
        i += 2;
      }
    } else if (args.length > 0) {
      out = inspect(args[0], 0, []);
      next = 1;
    }
    for (; next < args.length; next++) out += " " + inspect(args[next], 0, []);
    return out;
  }

  function emit(level, args) {
    if (lines.length >= MAX_LINES) {
      dropped++;
      return;
    }
    let text;
    try {
      text = format(args);
    } catch (error) {
      text = "[console output could not be formatted]";
    }
    if (text.length > MAX_LINE_CHARS) text = apply(stringSlice, text, [0, MAX_LINE_CHARS]) + "…";
    apply(arrayPush, lines, [level + ": " + text]);
  }

  function take() {
    // The lines logged since the last call, and how many more were not kept.
    const taken = [lines, dropped];
    lines = [];
    dropped = 0;
    return taken;
  }

  const console = {};
  for (const [name, level] of [
    ["log", "log"],
    ["info", "info"],
    ["debug", "debug"],
    ["warn", "warn"],
    ["error", "error"],
    ["trace", "trace"],
    ["dir", "log"],
    ["table", "log"],
  ]) {
    console[name] = {
      [name](...args) {
        emit(level, args);
      },
    }[name];
  }

  return { console, take };
}
