// Built-in parser "json-flatten": one data item per leaf of a JSON document.
//
// A JSON message reaches a parser in one of two shapes, and both are flattened:
//   - an item whose value is JSON text (or an already parsed object/array), e.g.
//     {"variable": "payload", "value": "{\"a\":{\"b\":1},\"c\":[1,2]}"}
//   - a JSON object published as-is, which arrives as an item without "variable":
//     {"a": {"b": 1}, "c": [1, 2], "metadata": {"mqtt_topic": "..."}}
// Nested keys are joined with "_" and array elements by their index, so both give the
// variables a_b, c_0 and c_1. A top-level array is prefixed with the item's variable
// (payload_0, payload_1, ...). Names are lower-cased and characters a variable may not
// contain become "_". null leaves are skipped. group, time and metadata are carried over
// to every item produced; other items pass through unchanged.

const ITEM_FIELDS = ["metadata", "time", "group", "serie", "location", "unit"];

function variableName(path) {
  return path.join("_").toLowerCase().replace(/[\s*?!<>.=$-]/g, "_");
}

function flatten(value, path, out) {
  if (value === null || value === undefined) return;
  if (Array.isArray(value)) {
    value.forEach((element, index) => flatten(element, path.concat(String(index)), out));
  } else if (typeof value === "object") {
    for (const key of Object.keys(value)) flatten(value[key], path.concat(key), out);
  } else {
    out.push({ variable: variableName(path), value });
  }
}

function parseDocument(value) {
  // The object or array a value holds, or undefined when it holds none.
  if (value !== null && typeof value === "object") return value;
  if (typeof value !== "string") return undefined;
  const text = value.trim();
  if (!text.startsWith("{") && !text.startsWith("[")) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    return undefined;
  }
}

function carried(item) {
  const extra = {};
  for (const field of ["group", "time", "metadata"]) {
    if (item[field] !== undefined) extra[field] = item[field];
  }
  return extra;
}

const flattened = [];
for (const item of payload) {
  if (item === null || typeof item !== "object" || Array.isArray(item)) {
    flattened.push(item);
    continue;
  }
  const leaves = [];
  if ("variable" in item) {
    const document = parseDocument(item.value);
    if (document === undefined) {
      flattened.push(item);
      continue;
    }
    flatten(document, Array.isArray(document) ? [item.variable] : [], leaves);
  } else {
    const document = {};
    for (const key of Object.keys(item)) {
      if (!ITEM_FIELDS.includes(key)) document[key] = item[key];
    }
    flatten(document, [], leaves);
  }
  const extra = carried(item);
  for (const leaf of leaves) flattened.push({ ...leaf, ...extra });
}
payload = flattened;
