// Built-in parser "cayenne-lpp": Cayenne Low Power Payload (LPP v1) frames to data items.
//
// The frame is read from the item whose variable is "payload", "payload_raw", "data",
// "frm_payload" or "bytes": hex text, or base64 when the text is not hex. Other items pass
// through. A frame is a run of data points [channel][type][value, big-endian]:
//
//   type  name           bytes  value                        variable(s) for channel c
//   0     digital input    1    unsigned                     digital_input_c
//   1     digital output   1    unsigned                     digital_output_c
//   2     analog input     2    signed, 0.01                 analog_input_c
//   3     analog output    2    signed, 0.01                 analog_output_c
//   101   illuminance      2    unsigned, 1 lux              illuminance_c
//   102   presence         1    unsigned                     presence_c
//   103   temperature      2    signed, 0.1 °C               temperature_c
//   104   humidity         1    unsigned, 0.5 %              humidity_c
//   113   accelerometer    6    3 x signed, 0.001 G          accelerometer_x_c, _y_c, _z_c
//   115   barometer        2    unsigned, 0.1 hPa            barometer_c
//   134   gyrometer        6    3 x signed, 0.01 °/s         gyrometer_x_c, _y_c, _z_c
//   136   GPS              9    lat, lon: 3 x signed 0.0001° location_c ("lat,lng" with a
//                               altitude: 3 x signed 0.01 m  location), altitude_c
//
// A truncated frame or an unknown type gives a parse_error item (points decoded before it
// are kept). group and time of the source item are copied to every item.

const FRAME_VARIABLES = ["payload", "payload_raw", "data", "frm_payload", "bytes"];

function signed24(buffer, offset) {
  return buffer.readIntBE(offset, 3);
}

const SCALAR = {
  0: ["digital_input", 1, (b, o) => b.readUInt8(o), undefined],
  1: ["digital_output", 1, (b, o) => b.readUInt8(o), undefined],
  2: ["analog_input", 2, (b, o) => b.readInt16BE(o) / 100, undefined],
  3: ["analog_output", 2, (b, o) => b.readInt16BE(o) / 100, undefined],
  101: ["illuminance", 2, (b, o) => b.readUInt16BE(o), "lux"],
  102: ["presence", 1, (b, o) => b.readUInt8(o), undefined],
  103: ["temperature", 2, (b, o) => b.readInt16BE(o) / 10, "°C"],
  104: ["humidity", 1, (b, o) => b.readUInt8(o) / 2, "%"],
  115: ["barometer", 2, (b, o) => b.readUInt16BE(o) / 10, "hPa"],
};
const TRIPLE = {
  113: ["accelerometer", 1000, "G"],
  134: ["gyrometer", 100, "°/s"],
};

function decodeFrame(buffer, items) {
  let offset = 0;
  while (offset < buffer.length) {
    if (offset + 2 > buffer.length) throw new Error(`frame ends inside the header at byte ${offset}`);
    const channel = buffer.readUInt8(offset);
    const type = buffer.readUInt8(offset + 1);
    const at = offset + 2;
    let size;
    if (type in SCALAR) {
      const [name, width, read, unit] = SCALAR[type];
      size = width;
      if (at + size > buffer.length) throw new Error(`${name} on channel ${channel} is truncated`);
      const item = { variable: `${name}_${channel}`, value: read(buffer, at) };
      if (unit !== undefined) item.unit = unit;
      items.push(item);
    } else if (type in TRIPLE) {
      const [name, divisor, unit] = TRIPLE[type];
      size = 6;
      if (at + size > buffer.length) throw new Error(`${name} on channel ${channel} is truncated`);
      ["x", "y", "z"].forEach((axis, i) => {
        items.push({ variable: `${name}_${axis}_${channel}`, value: buffer.readInt16BE(at + 2 * i) / divisor, unit });
      });
    } else if (type === 136) {
      size = 9;
      if (at + size > buffer.length) throw new Error(`GPS on channel ${channel} is truncated`);
      const lat = signed24(buffer, at) / 10000;
      const lng = signed24(buffer, at + 3) / 10000;
      const altitude = signed24(buffer, at + 6) / 100;
      items.push({ variable: `location_${channel}`, value: `${lat},${lng}`, location: { lat, lng } });
      items.push({ variable: `altitude_${channel}`, value: altitude, unit: "m" });
    } else {
      throw new Error(`unknown data type ${type} on channel ${channel} at byte ${offset + 1}`);
    }
    offset = at + size;
  }
}

function frameBytes(text) {
  const compact = String(text).replace(/\s+/g, "");
  if (/^([0-9a-fA-F]{2})+$/.test(compact)) return Buffer.from(compact, "hex");
  return Buffer.from(compact, "base64");
}

const decoded = [];
for (const item of payload) {
  if (!item || !FRAME_VARIABLES.includes(item.variable) || typeof item.value !== "string") {
    decoded.push(item);
    continue;
  }
  const extra = {};
  if (item.group !== undefined) extra.group = item.group;
  if (item.time !== undefined) extra.time = item.time;
  const items = [];
  let failure = null;
  try {
    decodeFrame(frameBytes(item.value), items);
  } catch (error) {
    failure = error;
  }
  for (const point of items) decoded.push({ ...point, ...extra });
  if (failure !== null) decoded.push({ variable: "parse_error", value: `Cayenne LPP: ${failure.message}`, ...extra });
}
payload = decoded;
