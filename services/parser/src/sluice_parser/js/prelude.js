// The parser realm: globals a TagoIO payload parser sees, the runner the host calls, and the
// hardening that lets one realm serve many runs without one run seeing another's leftovers.
//
// Evaluated by realm.py inside one function with the other environment files, as
//   createRuntime(createBuffer(), {harden, linePad})
// and the host gets back a function that hands out the runner entry points by name.

function createRuntime(bufferModule, options) {
  "use strict";

  const global = globalThis;
  const { Buffer, inspectBuffer } = bufferModule;
  const jsonParse = JSON.parse;
  const jsonStringify = JSON.stringify;
  const ownKeys = Reflect.ownKeys;
  const deleteProperty = Reflect.deleteProperty;
  const apply = Reflect.apply;
  const getProto = Object.getPrototypeOf;
  const defineProperty = Object.defineProperty;
  const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const freeze = Object.freeze;
  const isExtensible = Object.isExtensible;
  const FunctionCtor = Function;
  const AsyncFunctionCtor = (async function () {}).constructor;
  const asyncFunctionProto = AsyncFunctionCtor.prototype;
  const promiseThen = Promise.prototype.then;
  const StringCtor = String;
  const arrayPush = Array.prototype.push;
  const arrayJoin = Array.prototype.join;
  const regexpExec = RegExp.prototype.exec;
  const PER_RUN_GLOBALS = ["payload", "device", "raw_payload"];

  const output = createConsole(Buffer, inspectBuffer);
  const console = output.console;

  // --------------------------------------------------------------- the realm

  // Host extras QuickJS adds that a parser has no business with (a timer and a job queue);
  // the runner keeps the clock to time the runs of a batch.
  const performance = global.performance;
  const round = Math.round;
  const clock = performance ? () => performance.now() : () => 0;
  delete global.performance;
  delete global.queueMicrotask;
  for (const [name, value] of [
    ["Buffer", Buffer],
    ["console", console],
  ]) {
    defineProperty(global, name, { value, writable: true, enumerable: false, configurable: true });
  }

  // Functions compiled from a body report lines shifted by the header the engine adds.
  const FRAME_POSITION = /<input>:(\d+):(\d+)/;
  const functionLineOffset = (() => {
    try {
      new FunctionCtor("throw new Error()")();
    } catch (error) {
      const match = apply(regexpExec, FRAME_POSITION, [error.stack]);
      if (match !== null) return +match[1] - 1;
    }
    return 0;
  })();

  function userFrames(stack) {
    // A stack as the script's author reads it: library frames (beyond the padding lines)
    // dropped, line numbers counted from the first line of the script.
    if (typeof stack !== "string") return stack;
    const frames = apply(String.prototype.split, stack, ["\n"]);
    const kept = [];
    for (let i = 0; i < frames.length; i++) {
      const frame = frames[i];
      const match = apply(regexpExec, FRAME_POSITION, [frame]);
      if (match === null) {
        apply(arrayPush, kept, [frame]);
        continue;
      }
      const line = +match[1];
      if (line >= options.linePad) continue;
      const position = `<input>:${Math.max(1, line - functionLineOffset)}:${match[2]}`;
      apply(arrayPush, kept, [apply(String.prototype.replace, frame, [match[0], position])]);
    }
    return apply(arrayJoin, kept, ["\n"]);
  }

  const stackDescriptor = getOwnPropertyDescriptor(Error.prototype, "stack");
  if (stackDescriptor && stackDescriptor.get) {
    const engineStack = stackDescriptor.get;
    defineProperty(Error.prototype, "stack", {
      get: function stack() {
        return userFrames(apply(engineStack, this, []));
      },
      set: stackDescriptor.set,
      enumerable: stackDescriptor.enumerable,
      configurable: true,
    });
  }

  function lineOf(stack) {
    // The line of the innermost frame in the script (stacks are already rewritten).
    if (typeof stack !== "string") return null;
    const match = apply(regexpExec, FRAME_POSITION, [stack]);
    return match === null ? null : +match[1];
  }

  function describeError(error) {
    if (error !== null && (typeof error === "object" || typeof error === "function")) {
      const info = { name: null, message: "", code: null, line: null };
      try {
        info.name = error.name == null ? null : StringCtor(error.name);
        info.message = error.message == null ? StringCtor(error) : StringCtor(error.message);
        if (typeof error.code === "string") info.code = error.code;
        info.line = lineOf(error.stack);
      } catch (ignored) {
        // a hostile error object: report what we have
      }
      return info;
    }
    let text;
    try {
      text = StringCtor(error);
    } catch (ignored) {
      text = typeof error;
    }
    return { name: null, message: text, code: null, line: null };
  }

  // --------------------------------------------------------------- hardening

  function tameAssignments(object, keys) {
    // Frozen prototypes would make `err.name = "X"` fail on instances (the "override
    // mistake"); an accessor keeps the inherited value and lets instances get their own.
    for (const key of keys) {
      const desc = getOwnPropertyDescriptor(object, key);
      if (!desc || !("value" in desc)) continue;
      const value = desc.value;
      defineProperty(object, key, {
        get: { [key]() { return value; } }[key],
        set: {
          [key](newValue) {
            if (this === object || this === null || (typeof this !== "object" && typeof this !== "function")) return;
            defineProperty(this, key, { value: newValue, writable: true, enumerable: true, configurable: true });
          },
        }[key],
        enumerable: desc.enumerable,
        configurable: desc.configurable,
      });
    }
  }

  function hiddenIntrinsics() {
    // Shared objects user code can reach without going through a global name.
    const found = [];
    const attempts = [
      () => getProto(function* () {}),
      () => getProto(async function () {}),
      () => getProto(async function* () {}),
      () => getProto([][Symbol.iterator]()),
      () => getProto(""[Symbol.iterator]()),
      () => getProto(new Map()[Symbol.iterator]()),
      () => getProto(new Set()[Symbol.iterator]()),
      () => getProto(/x/[Symbol.matchAll]("")),
      () => getProto(Iterator.from({ next: () => ({ done: true }) })),
      () => getProto([].values().map((x) => x)),
      () => getProto(Iterator.concat()),
      () => getProto((async function* () {})()),
      () => getProto((function* () {})()),
      () => getOwnPropertyDescriptor(Function.prototype, "caller").get,
    ];
    for (const attempt of attempts) {
      try {
        found.push(attempt());
      } catch (ignored) {
        // not in this engine version
      }
    }
    return found;
  }

  function harden(extraRoots) {
    // Error.stackTraceLimit / prepareStackTrace are accessors over engine state that freezing
    // would not protect: pin them as read-only data.
    for (const key of ["stackTraceLimit", "prepareStackTrace"]) {
      const desc = getOwnPropertyDescriptor(Error, key);
      if (desc && desc.get) {
        defineProperty(Error, key, { value: desc.get.call(Error), writable: false, configurable: true });
      }
    }
    tameAssignments(Object.prototype, [
      "constructor",
      "toString",
      "toLocaleString",
      "valueOf",
      "hasOwnProperty",
      "isPrototypeOf",
      "propertyIsEnumerable",
    ]);
    for (const ErrorType of [
      Error,
      EvalError,
      RangeError,
      ReferenceError,
      SyntaxError,
      TypeError,
      URIError,
      AggregateError,
      global.InternalError,
      global.SuppressedError,
    ]) {
      if (ErrorType) tameAssignments(ErrorType.prototype, ["name", "message", "constructor", "toString"]);
    }
    tameAssignments(Function.prototype, ["toString"]);

    const reached = new Set([global]);
    const pending = [...extraRoots, ...hiddenIntrinsics()];
    for (const key of ownKeys(global)) pending.push(getOwnPropertyDescriptor(global, key));
    while (pending.length > 0) {
      const item = pending.pop();
      if (item === null || (typeof item !== "object" && typeof item !== "function")) continue;
      if (reached.has(item)) continue;
      reached.add(item);
      pending.push(getProto(item));
      for (const key of ownKeys(item)) {
        const desc = getOwnPropertyDescriptor(item, key);
        pending.push(desc.value, desc.get, desc.set);
      }
    }
    reached.delete(global);
    for (const item of reached) freeze(item);

    // Built-in globals can be neither replaced nor deleted; scripts may still add their own.
    for (const key of ownKeys(global)) {
      const desc = getOwnPropertyDescriptor(global, key);
      if ("value" in desc) defineProperty(global, key, { writable: false, configurable: false });
      else defineProperty(global, key, { configurable: false });
    }
  }

  // eval can declare global `let`/`const` bindings no later check can see, so in a hardened
  // realm any use of it retires the realm. (Scripts that name eval get a throwaway realm with
  // the real one; this catches the rest, with indirect-eval semantics.)
  let evalUsed = false;
  if (options.harden) {
    const intrinsicEval = global.eval;
    const guardedEval = {
      eval(source) {
        evalUsed = true;
        return intrinsicEval(source);
      },
    }.eval;
    defineProperty(global, "eval", { value: guardedEval, writable: true, configurable: true });
    harden(bufferModule.internals);
  }

  // The per-run globals. In a hardened realm they cannot be deleted or redefined (a setter
  // left there would run in the next script), only reassigned: the runner's strict-mode
  // assignments then fail loudly if a script made them read-only.
  for (const key of PER_RUN_GLOBALS) {
    defineProperty(global, key, {
      value: null,
      writable: true,
      enumerable: true,
      configurable: !options.harden,
    });
  }
  const baseKeys = new Set(ownKeys(global));
  const baseProto = getProto(global);

  function restoreGlobals() {
    // Remove what the run added to the global object; false when that is not possible.
    let pristine = true;
    try {
      global.payload = null;
      global.device = null;
      global.raw_payload = null;
    } catch (readOnly) {
      pristine = false;
    }
    const keys = ownKeys(global);
    if (keys.length !== baseKeys.size) {
      for (const key of keys) {
        if (!baseKeys.has(key) && !deleteProperty(global, key)) pristine = false;
      }
    }
    if (evalUsed) {
      evalUsed = false;
      pristine = false;
    }
    return pristine && getProto(global) === baseProto && isExtensible(global);
  }

  // ------------------------------------------------------------------ runner

  function serialize(value) {
    let text;
    try {
      text = jsonStringify(value);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
      // BigInt values are kept as their decimal text.
      text = jsonStringify(value, (key, item) => (typeof item === "bigint" ? StringCtor(item) : item));
    }
    return text === undefined ? "null" : text;
  }

  // QuickJS builds a function from its body by parsing "function anonymous(...) {" + body +
  // "}" as a whole, so a body that closes the function early runs code of its own there and
  // then. compile() refuses such bodies: the function's source must be exactly the body.
  const functionToString = FunctionCtor.prototype.toString;
  const sourceFrame = (Ctor) => {
    const probe = apply(functionToString, new Ctor("BODY"), []);
    const at = apply(String.prototype.indexOf, probe, ["BODY"]);
    return [apply(String.prototype.slice, probe, [0, at]), apply(String.prototype.slice, probe, [at + 4])];
  };
  const plainFrame = sourceFrame(FunctionCtor);
  const asyncFrame = sourceFrame(AsyncFunctionCtor);

  function compile(code) {
    // The script body becomes a function (an async one when it uses top-level await).
    // Returns the function, or the JSON of [error, pristine] when the body is not valid.
    let fn;
    let frame = plainFrame;
    try {
      fn = new FunctionCtor(code);
    } catch (error) {
      if (!(error instanceof SyntaxError) || !apply(regexpExec, /\bawait\b/, [code])) {
        return compileError(describeError(error));
      }
      try {
        fn = new AsyncFunctionCtor(code);
        frame = asyncFrame;
      } catch (asyncError) {
        return compileError(describeError(asyncError));
      }
    }
    if (typeof fn !== "function" || apply(functionToString, fn, []) !== frame[0] + code + frame[1]) {
      return compileError({
        name: "SyntaxError",
        message: "unbalanced braces: the script closes more blocks than it opens",
        code: null,
        line: null,
      });
    }
    if (options.harden) {
      // The same function object serves later runs: nothing may be stored on it.
      if (fn.prototype) freeze(fn.prototype);
      freeze(fn);
    }
    return fn;
  }

  function compileError(info) {
    // A rejected body may have run code while it was parsed: report whether the realm is
    // still as it was.
    const pristine = options.harden ? restoreGlobals() : false;
    return jsonStringify([info, pristine]);
  }

  let settled = 0;
  let asyncError;

  function run(fn, payloadJson, deviceJson, rawBytes) {
    // Runs a compiled parser; returns the result envelope, or null while an async parser
    // waits for the host to drain the job queue and call settle().
    output.take();
    settled = 0;
    asyncError = undefined;
    global.payload = jsonParse(payloadJson);
    global.device = jsonParse(deviceJson);
    global.raw_payload = rawBytes === null ? null : Buffer.from(rawBytes, "latin1");
    let error = null;
    try {
      const result = fn();
      if (getProto(fn) === asyncFunctionProto) {
        apply(promiseThen, result, [
          () => {
            settled = 1;
          },
          (reason) => {
            settled = 2;
            asyncError = reason;
          },
        ]);
        return null;
      }
    } catch (thrown) {
      error = describeError(thrown);
    }
    return envelope(finish(error), null);
  }

  function settle() {
    if (settled === 2) return envelope(finish(describeError(asyncError)), null);
    if (settled === 0) {
      const never = { name: "Error", message: "the parser's top-level await never completed", code: null, line: null };
      return envelope(finish(never), null);
    }
    return envelope(finish(null), null);
  }

  // Compiled parsers the host may name by number in runBatch (it binds and unbinds them as
  // its compile cache changes).
  const slots = new Map();
  const mapGet = Map.prototype.get;
  const mapSet = Map.prototype.set;
  const mapDelete = Map.prototype.delete;

  function bind(slot, fn) {
    apply(mapSet, slots, [slot, fn]);
    return getProto(fn) === asyncFunctionProto;
  }

  function unbind(slot) {
    apply(mapDelete, slots, [slot]);
  }

  function runBatch(slotsJson, payloadsJson, devicesJson, rawsJson) {
    // Runs synchronous parsers one after another, each exactly as run() would, and returns
    // their envelopes (with each run's duration) joined by newlines, which JSON text never
    // holds raw. Stops after a run that leaves the realm changed or runs out of memory: the
    // host goes on with the rest in a fresh realm. Queued jobs cannot run here (only the host
    // runs them), so a job a run leaves behind is found by the host after the batch, before
    // the realm serves again.
    const fns = jsonParse(slotsJson);
    const payloads = jsonParse(payloadsJson);
    const devices = jsonParse(devicesJson);
    const raws = rawsJson === null ? null : jsonParse(rawsJson);
    const envelopes = [];
    for (let i = 0; i < fns.length; i++) {
      const fn = apply(mapGet, slots, [fns[i]]);
      const started = clock();
      output.take();
      global.payload = payloads[i];
      payloads[i] = null;
      global.device = jsonParse(devices[i]);
      const raw = raws === null ? null : raws[i];
      global.raw_payload = raw === null ? null : Buffer.from(raw, "latin1");
      let error = null;
      let bare = false;
      try {
        fn();
      } catch (thrown) {
        error = describeError(thrown);
        // Out of memory, the engine may throw null in place of its error: the host runs
        // such a message again alone, in a fresh realm, to tell the two apart.
        bare = thrown === null || thrown === undefined;
      }
      const finished = finish(error);
      const duration = round((clock() - started) * 1000) / 1000; // to the microsecond
      apply(arrayPush, envelopes, [envelope(finished, duration)]);
      if (!finished.pristine || finished.outOfMemory || bare) break;
    }
    return apply(arrayJoin, envelopes, ["\n"]);
  }

  function finish(error) {
    let out = "null";
    if (error === null) {
      try {
        out = serialize(global.payload);
      } catch (thrown) {
        error = describeError(thrown);
        error.message = "payload is not JSON-serialisable: " + error.message;
      }
    }
    const pristine = options.harden ? restoreGlobals() : false;
    const taken = output.take();
    const outOfMemory = error !== null && error.name === "InternalError" && error.message === "out of memory";
    return { pristine, error, logged: taken[0], dropped: taken[1], out, outOfMemory };
  }

  function envelope(finished, duration) {
    // [pristine, error, console lines, lines dropped, duration ms or null], then the payload's
    // JSON after a U+001F (which JSON text never holds raw), for the host to take as it is.
    const errorJson = finished.error === null ? "null" : jsonStringify(finished.error);
    const linesJson = finished.logged.length === 0 ? "[]" : jsonStringify(finished.logged);
    const durationJson = duration === null ? "null" : jsonStringify(duration);
    const parts = [
      "[",
      finished.pristine ? 1 : 0,
      ",",
      errorJson,
      ",",
      linesJson,
      ",",
      finished.dropped,
      ",",
      durationJson,
      "]\u001f",
      finished.out,
    ];
    // join() yields a flat string; a concatenation could be a rope the host cannot read.
    return apply(arrayJoin, parts, [""]);
  }

  function takeConsole() {
    // What an interrupted run logged before it was stopped.
    return jsonStringify(output.take());
  }

  const entryPoints = { compile, run, settle, takeConsole, bind, unbind, runBatch };
  return function runtime(name) {
    return entryPoints[name];
  };
}
