// The string encodings of Node's Buffer: utf8, hex, base64 and base64url, latin1 (binary),
// ascii and utf16le (ucs2), with Node's rules for invalid input: hex stops at the first bad
// pair, base64 skips characters outside both alphabets and stops at "=", UTF-8 decoding
// replaces each maximal invalid sequence with U+FFFD.
//
// Loaded with buffer.js into one function scope (see realm.py).

function createEncodings() {
  "use strict";

  const fromCharCode = String.fromCharCode;

  // Native codecs (ES2025 Uint8Array base64/hex, btoa, URI coding) for the common cases;
  // the JS codecs below handle everything else the way Node does.
  const nativeFromHex = Uint8Array.fromHex;
  const nativeFromBase64 = Uint8Array.fromBase64;
  const nativeToHex = Uint8Array.prototype.toHex;
  const nativeToBase64 = Uint8Array.prototype.toBase64;
  const nativeBtoa = globalThis.btoa;
  const uriEncode = encodeURIComponent;
  const uriDecode = decodeURIComponent;
  const latin1Escape = escape;
  const latin1Unescape = unescape;
  const EVEN_HEX = /^(?:[0-9a-fA-F]{2})*$/;
  const BASE64_STANDARD = /^[A-Za-z0-9+/]*={0,2}$/;
  const BASE64_URL = /^[A-Za-z0-9_-]*={0,2}$/;
  const ASCII = /^[\x00-\x7f]*$/;
  const URL_ALPHABET = { alphabet: "base64url" };
  const URL_OUTPUT = { alphabet: "base64url", omitPadding: true };
  const HEX_VALUE = new Int8Array(256).fill(-1);
  for (let i = 0; i < 10; i++) HEX_VALUE[48 + i] = i;
  for (let i = 0; i < 6; i++) {
    HEX_VALUE[65 + i] = 10 + i;
    HEX_VALUE[97 + i] = 10 + i;
  }
  const HEX_PAIR = [];
  for (let i = 0; i < 256; i++) HEX_PAIR.push((i < 16 ? "0" : "") + i.toString(16));

  const B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const B64URL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const B64_VALUE = new Int8Array(256).fill(-1);
  for (let i = 0; i < 64; i++) B64_VALUE[B64_CHARS.charCodeAt(i)] = i;
  B64_VALUE[45] = 62; // '-' of the url-safe alphabet, accepted by both decoders
  B64_VALUE[95] = 63; // '_'

  function charsToString(codes, count) {
    // String.fromCharCode over code units (an array or a typed array), in slices the
    // engine can spread.
    if (count <= 8192) {
      return fromCharCode.apply(null, count === codes.length ? codes : codes.slice(0, count));
    }
    let out = "";
    for (let i = 0; i < count; i += 8192) {
      out += fromCharCode.apply(null, codes.subarray ? codes.subarray(i, Math.min(i + 8192, count)) : codes.slice(i, Math.min(i + 8192, count)));
    }
    return out;
  }

  const view = (buf, start, end) =>
    start === 0 && end === buf.length ? buf : new Uint8Array(buf.buffer, buf.byteOffset + start, end - start);

  function bytesOfLatin1(string) {
    // Characters U+0000..U+00FF to bytes, natively; undefined when the string has others.
    try {
      return nativeFromBase64(nativeBtoa(string));
    } catch (ignored) {
      return undefined;
    }
  }

  function utf8Length(string) {
    let bytes = 0;
    const n = string.length;
    for (let i = 0; i < n; i++) {
      const c = string.charCodeAt(i);
      if (c < 0x80) bytes += 1;
      else if (c < 0x800) bytes += 2;
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const d = string.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          bytes += 4;
          i++;
        } else bytes += 3;
      } else bytes += 3;
    }
    return bytes;
  }

  function utf8Write(buf, string, offset, limit) {
    // Whole characters only, as Node does; lone surrogates become U+FFFD.
    let pos = offset;
    const end = offset + limit;
    const n = string.length;
    for (let i = 0; i < n; i++) {
      let c = string.charCodeAt(i);
      if (c < 0x80) {
        if (pos >= end) break;
        buf[pos++] = c;
        continue;
      }
      if (c < 0x800) {
        if (pos + 2 > end) break;
        buf[pos++] = 0xc0 | (c >> 6);
        buf[pos++] = 0x80 | (c & 0x3f);
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < n ? string.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          if (pos + 4 > end) break;
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          buf[pos++] = 0xf0 | (c >> 18);
          buf[pos++] = 0x80 | ((c >> 12) & 0x3f);
          buf[pos++] = 0x80 | ((c >> 6) & 0x3f);
          buf[pos++] = 0x80 | (c & 0x3f);
          i++;
          continue;
        }
        c = 0xfffd;
      }
      if (pos + 3 > end) break;
      buf[pos++] = 0xe0 | (c >> 12);
      buf[pos++] = 0x80 | ((c >> 6) & 0x3f);
      buf[pos++] = 0x80 | (c & 0x3f);
    }
    return pos - offset;
  }

  function utf8Slice(buf, start, end) {
    const latin1 = charsToString(view(buf, start, end), end - start);
    if (ASCII.test(latin1)) return latin1;
    try {
      return uriDecode(latin1Escape(latin1)); // well-formed UTF-8
    } catch (ignored) {
      return utf8SliceSlow(buf, start, end);
    }
  }

  function utf8SliceSlow(buf, start, end) {
    // WHATWG UTF-8 decoding: each maximal invalid subsequence becomes one U+FFFD.
    const codes = [];
    let i = start;
    while (i < end) {
      const b = buf[i];
      if (b < 0x80) {
        codes.push(b);
        i++;
        continue;
      }
      let need = 0;
      let cp = 0;
      let lower = 0x80;
      let upper = 0xbf;
      if (b >= 0xc2 && b <= 0xdf) {
        need = 1;
        cp = b & 0x1f;
      } else if (b >= 0xe0 && b <= 0xef) {
        need = 2;
        cp = b & 0x0f;
        if (b === 0xe0) lower = 0xa0;
        else if (b === 0xed) upper = 0x9f;
      } else if (b >= 0xf0 && b <= 0xf4) {
        need = 3;
        cp = b & 0x07;
        if (b === 0xf0) lower = 0x90;
        else if (b === 0xf4) upper = 0x8f;
      } else {
        codes.push(0xfffd);
        i++;
        continue;
      }
      let j = i + 1;
      let complete = true;
      for (let k = 0; k < need; k++, j++) {
        const c = j < end ? buf[j] : -1;
        if (c < lower || c > upper) {
          complete = false;
          break;
        }
        lower = 0x80;
        upper = 0xbf;
        cp = (cp << 6) | (c & 0x3f);
      }
      i = j;
      if (!complete) codes.push(0xfffd);
      else if (cp > 0xffff) {
        cp -= 0x10000;
        codes.push(0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff));
      } else codes.push(cp);
    }
    return charsToString(codes, codes.length);
  }

  function hexWrite(buf, string, offset, limit) {
    // Stops at the first pair that is not two hex digits; an odd last digit is ignored.
    const pairs = Math.min(string.length >>> 1, limit);
    let i = 0;
    for (; i < pairs; i++) {
      const hi = string.charCodeAt(2 * i);
      const lo = string.charCodeAt(2 * i + 1);
      const h = hi < 256 ? HEX_VALUE[hi] : -1;
      const l = lo < 256 ? HEX_VALUE[lo] : -1;
      if (h < 0 || l < 0) break;
      buf[offset + i] = (h << 4) | l;
    }
    return i;
  }

  function hexSlice(buf, start, end) {
    if (nativeToHex) return nativeToHex.call(view(buf, start, end));
    let out = "";
    for (let i = start; i < end; i++) out += HEX_PAIR[buf[i]];
    return out;
  }

  function base64Length(string) {
    let n = string.length;
    if (n > 0 && string.charCodeAt(n - 1) === 0x3d) n--;
    if (n > 1 && string.charCodeAt(n - 1) === 0x3d) n--;
    return (n * 3) >>> 2;
  }

  function base64Write(buf, string, offset, limit) {
    // Node's forgiving decoder: both alphabets, characters outside them are skipped,
    // the first '=' ends the data, output is capped at the size estimated from the length.
    const capacity = Math.min(limit, base64Length(string));
    let pos = offset;
    const end = offset + capacity;
    let acc = 0;
    let sextets = 0;
    const n = string.length;
    for (let i = 0; i < n && pos < end; i++) {
      const c = string.charCodeAt(i);
      if (c === 0x3d) break;
      const v = c < 256 ? B64_VALUE[c] : -1;
      if (v < 0) continue;
      acc = (acc << 6) | v;
      sextets++;
      if (sextets === 2) buf[pos++] = (acc >> 4) & 0xff;
      else if (sextets === 3) buf[pos++] = (acc >> 2) & 0xff;
      else if (sextets === 4) {
        buf[pos++] = acc & 0xff;
        sextets = 0;
        acc = 0;
      }
    }
    return pos - offset;
  }

  function base64Slice(buf, start, end, alphabet, pad) {
    let out = "";
    let i = start;
    for (; i + 2 < end; i += 3) {
      const v = (buf[i] << 16) | (buf[i + 1] << 8) | buf[i + 2];
      out +=
        alphabet[v >> 18] + alphabet[(v >> 12) & 63] + alphabet[(v >> 6) & 63] + alphabet[v & 63];
    }
    const left = end - i;
    if (left === 1) {
      const v = buf[i] << 16;
      out += alphabet[v >> 18] + alphabet[(v >> 12) & 63] + (pad ? "==" : "");
    } else if (left === 2) {
      const v = (buf[i] << 16) | (buf[i + 1] << 8);
      out += alphabet[v >> 18] + alphabet[(v >> 12) & 63] + alphabet[(v >> 6) & 63] + (pad ? "=" : "");
    }
    return out;
  }

  function latin1Write(buf, string, offset, limit) {
    const n = Math.min(string.length, limit);
    for (let i = 0; i < n; i++) buf[offset + i] = string.charCodeAt(i);
    return n;
  }

  function latin1Slice(buf, start, end) {
    return charsToString(view(buf, start, end), end - start);
  }

  function asciiSlice(buf, start, end) {
    const latin1 = charsToString(view(buf, start, end), end - start);
    if (ASCII.test(latin1)) return latin1;
    const codes = new Array(end - start);
    for (let i = start; i < end; i++) codes[i - start] = buf[i] & 0x7f;
    return charsToString(codes, codes.length);
  }

  function ucs2Write(buf, string, offset, limit) {
    const n = Math.min(string.length, limit >>> 1);
    for (let i = 0; i < n; i++) {
      const c = string.charCodeAt(i);
      buf[offset + 2 * i] = c & 0xff;
      buf[offset + 2 * i + 1] = c >> 8;
    }
    return 2 * n;
  }

  function ucs2Slice(buf, start, end) {
    const n = (end - start) >>> 1;
    const codes = new Array(n);
    for (let i = 0; i < n; i++) codes[i] = buf[start + 2 * i] | (buf[start + 2 * i + 1] << 8);
    return charsToString(codes, n);
  }

  const ENCODINGS = {
    utf8: { name: "utf8", length: utf8Length, write: utf8Write, slice: utf8Slice },
    hex: {
      name: "hex",
      length: (s) => s.length >>> 1,
      write: hexWrite,
      slice: hexSlice,
    },
    base64: {
      name: "base64",
      length: base64Length,
      write: base64Write,
      slice: (b, s, e) =>
        nativeToBase64 ? nativeToBase64.call(view(b, s, e)) : base64Slice(b, s, e, B64_CHARS, true),
    },
    base64url: {
      name: "base64url",
      length: base64Length,
      write: base64Write,
      slice: (b, s, e) =>
        nativeToBase64
          ? nativeToBase64.call(view(b, s, e), URL_OUTPUT)
          : base64Slice(b, s, e, B64URL_CHARS, false),
    },
    latin1: { name: "latin1", length: (s) => s.length, write: latin1Write, slice: latin1Slice },
    ascii: { name: "ascii", length: (s) => s.length, write: latin1Write, slice: asciiSlice },
    utf16le: { name: "utf16le", length: (s) => s.length * 2, write: ucs2Write, slice: ucs2Slice },
  };
  const ENCODING_ALIASES = Object.assign(Object.create(null), {
    utf8: ENCODINGS.utf8,
    "utf-8": ENCODINGS.utf8,
    hex: ENCODINGS.hex,
    base64: ENCODINGS.base64,
    base64url: ENCODINGS.base64url,
    latin1: ENCODINGS.latin1,
    binary: ENCODINGS.latin1,
    ascii: ENCODINGS.ascii,
    ucs2: ENCODINGS.utf16le,
    "ucs-2": ENCODINGS.utf16le,
    utf16le: ENCODINGS.utf16le,
    "utf-16le": ENCODINGS.utf16le,
  });

  function encodingOf(encoding) {
    // undefined when the name is not an encoding Node knows (case-insensitive).
    const text = String(encoding);
    return ENCODING_ALIASES[text] || ENCODING_ALIASES[text.toLowerCase()];
  }

  function encodeNatively(string, ops) {
    // The engine's codecs where their result is Node's; undefined to use the JS codec.
    if (ops === ENCODINGS.hex) {
      return nativeFromHex && EVEN_HEX.test(string) ? nativeFromHex(string) : undefined;
    }
    if (ops === ENCODINGS.base64 || ops === ENCODINGS.base64url) {
      if (!nativeFromBase64) return undefined;
      try {
        if (BASE64_STANDARD.test(string)) return nativeFromBase64(string);
        if (BASE64_URL.test(string)) return nativeFromBase64(string, URL_ALPHABET);
      } catch (ignored) {
        // a shape the native decoder rejects (e.g. one stray character): Node's rules below
      }
      return undefined;
    }
    if (string.length < 16 || !nativeFromBase64 || !nativeBtoa) return undefined;
    if (ops === ENCODINGS.latin1 || ops === ENCODINGS.ascii) return bytesOfLatin1(string);
    if (ops === ENCODINGS.utf8) {
      if (ASCII.test(string)) return bytesOfLatin1(string);
      try {
        return bytesOfLatin1(latin1Unescape(uriEncode(string)));
      } catch (ignored) {
        return undefined; // lone surrogates
      }
    }
    return undefined;
  }

  function encodeBytes(string, ops) {
    // The bytes of `string` in an encoding, as a Uint8Array of exactly that length.
    const bytes = encodeNatively(string, ops);
    if (bytes !== undefined) return bytes;
    if (ops === ENCODINGS.utf8) {
      const out = new Uint8Array(utf8Length(string));
      utf8Write(out, string, 0, out.length);
      return out;
    }
    const estimate = ops.length(string);
    const out = new Uint8Array(estimate);
    const written = ops.write(out, string, 0, estimate);
    return written === estimate ? out : out.subarray(0, written);
  }

  return { ENCODINGS, encodingOf, encodeBytes, hexPair: HEX_PAIR };
}
