// Built-in parser "senml": SenML JSON (RFC 8428) records to data items.
//
// The pack may arrive as JSON text or an array in an item's value, or as records published
// directly (a JSON array message: each record becomes an item without "variable").
// Resolution follows RFC 8428 section 4.6: base fields (bn, bt, bu, bv, bs) apply to every
// later record of the pack until replaced;
//   name  = bn + n                (lower-cased; characters a variable may not contain -> "_",
//                                  the original kept in metadata.senml_name when it changed)
//   time  = bt + t, in seconds    (below 2**28 it is relative to now; absent -> left to
//                                  the platform, which uses the arrival time)
//   unit  = u, else bu
//   value = bv + v, or vs, vb, vd as given; a sum (bs + s) becomes the item "<name>_sum".
// Records with neither a value nor a sum only set base fields. A pack that cannot be read
// gives a parse_error item; items that are not SenML pass through.

const SENML_KEYS = ["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"];
const RELATIVE_LIMIT = 2 ** 28;

function isRecord(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    !Array.isArray(value) &&
    !("variable" in value) &&
    SENML_KEYS.some((key) => key in value)
  );
}

function readPack(value) {
  // The records an item's value holds, or undefined.
  let pack = value;
  if (typeof value === "string") {
    const text = value.trim();
    if (!text.startsWith("[")) return undefined;
    try {
      pack = JSON.parse(text);
    } catch (error) {
      return undefined;
    }
  }
  if (!Array.isArray(pack) || pack.length === 0) return undefined;
  return pack.every((record) => record !== null && typeof record === "object" && SENML_KEYS.some((key) => key in record))
    ? pack
    : undefined;
}

function number(record, key) {
  const value = record[key];
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new Error(`SenML field "${key}" must be a number, got ${JSON.stringify(value)}`);
  }
  return value;
}

function resolve(pack, source, now) {
  const items = [];
  const base = { name: "", time: 0, unit: undefined, value: 0, sum: 0, timed: false };
  for (const record of pack) {
    if ("bn" in record) base.name = String(record.bn);
    if ("bt" in record) {
      base.time = number(record, "bt");
      base.timed = true;
    }
    if ("bu" in record) base.unit = record.bu;
    if ("bv" in record) base.value = number(record, "bv");
    if ("bs" in record) base.sum = number(record, "bs");

    const hasValue = "v" in record || "vs" in record || "vb" in record || "vd" in record;
    const hasSum = "s" in record;
    if (!hasValue && !hasSum) continue;
    const name = base.name + ("n" in record ? String(record.n) : "");
    if (name === "") throw new Error("a SenML record has no name (neither bn nor n)");

    const common = {};
    if (base.timed || "t" in record) {
      const seconds = base.time + ("t" in record ? number(record, "t") : 0);
      const absolute = seconds < RELATIVE_LIMIT ? now / 1000 + seconds : seconds;
      common.time = new Date(Math.round(absolute * 1000)).toISOString();
    }
    const unit = "u" in record ? record.u : base.unit;
    if (unit !== undefined) common.unit = String(unit);
    if (source.group !== undefined) common.group = source.group;
    const variable = name.toLowerCase().replace(/[\s*?!<>.=$-]/g, "_");
    const metadata = { ...(source.metadata || {}) };
    if (variable !== name) metadata.senml_name = name;
    if (Object.keys(metadata).length > 0) common.metadata = metadata;

    if (hasValue) {
      let value;
      if ("v" in record) value = base.value + number(record, "v");
      else if ("vs" in record) value = String(record.vs);
      else if ("vb" in record) value = Boolean(record.vb);
      else value = String(record.vd);
      items.push({ variable, value, ...common });
    }
    if (hasSum) items.push({ variable: `${variable}_sum`, value: base.sum + number(record, "s"), ...common });
  }
  return items;
}

function decode(pack, source, out) {
  try {
    out.push(...resolve(pack, source, Date.now()));
  } catch (error) {
    out.push({ variable: "parse_error", value: `SenML: ${error.message}` });
  }
}

const output = [];
const loose = payload.filter(isRecord);
if (loose.length > 0) {
  // Records published as a JSON array: the items, in order, are the pack.
  const first = loose[0];
  decode(loose, { group: first.group, metadata: first.metadata }, output);
}
for (const item of payload) {
  if (isRecord(item)) continue;
  const pack = item !== null && typeof item === "object" ? readPack(item.value) : undefined;
  if (pack === undefined) output.push(item);
  else decode(pack, item, output);
}
payload = output;
