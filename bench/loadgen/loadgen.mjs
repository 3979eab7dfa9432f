// Load generator for bench/fanout.py --generator node (and bench/cluster.py).
//
// It does what fanout.py's Python generator (`_generate`) does, for far less CPU
// per received frame, so that on a small machine the server under test gets the
// cores: one process, many TLS clients of the chatnet wire protocol
// (/work/shared/PROTOCOL.md sections 1-3; docs/protocol.md), logged in with
// `auth.resume`; some of them send `msg.send` at a fixed pace, all of them time
// every `msg` event they receive.
//
// Talks to its parent (fanout.py's NodeGenerator) in JSON lines:
//   stdin  line 1: the params fanout.py gives every generator (port, ca, users
//                  [[index, name, token]], room_ids (as strings), rate, senders, k_start,
//                  k_end, body_bytes, client_msg_prefix?, drain,
//                  connect_concurrency; `light` is ignored: this path is always
//                  light);
//   stdout        {"ready": n} once the n clients are logged in;
//   stdin  line 2: {"t0": seconds since the epoch (float)};
//   stdout        {"report": {...}} the same dict as the Python generator's,
//                  with `latencies` and `ack_latencies` as base64 of float64
//                  in the machine's byte order (what array('d').tobytes() gives).
// Logs go to stderr. Install the dependency first: npm ci --prefix bench/loadgen
//
// Clock: bodies carry the send time as nanoseconds since the Unix epoch (like
// Python's time.time_ns()); latency is the receive time minus that, possibly
// across generator processes, so every process must read the same wall clock.
// Here it is the monotonic performance.now() plus performance.timeOrigin (the
// wall-clock time at its zero, to the microsecond), kept as milliseconds since
// a whole epoch millisecond (small doubles: no precision lost).

import fs from "node:fs";
import tls from "node:tls";
import readline from "node:readline";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";
import { Decoder, Encoder } from "@msgpack/msgpack";

const HOST = "127.0.0.1";
const ALPN = "chatnet/1";
const CLIENT = `chatnet-bench-loadgen/1 node/${process.versions.node}`;
const MAX_FRAME = 64 * 1024 * 1024; // as fanout.py's light receive path
const HELLO_TIMEOUT_MS = 15000; // chatnet.client.connection.HELLO_TIMEOUT
const PING_EVERY_MS = 30000; // PROTOCOL.md 3.7

// -- the clock ------------------------------------------------------------------------------

// performance.timeOrigin: the wall-clock time (epoch ms, to the microsecond) at which
// performance.now() was 0. Measured against Python's time.time_ns() it agrees to about
// 10 us; spinning until Date.now() ticks was 30-60 us off.
const ORIGIN = performance.timeOrigin;
const BASE_MS = Math.floor(ORIGIN);
const BASE_NS = BigInt(BASE_MS) * 1000000n;
const SHIFT_MS = ORIGIN - BASE_MS;

/** Milliseconds since BASE_MS (an epoch millisecond). */
function now() {
  return performance.now() + SHIFT_MS;
}

/** A time from now() as decimal nanoseconds since the epoch (time.time_ns()). */
function epochNs(t) {
  return (BASE_NS + BigInt(Math.round(t * 1e6))).toString();
}

function log(message) {
  process.stderr.write(`[loadgen ${process.pid}] ${message}\n`);
}

// -- a growable float64 array (array('d')) -------------------------------------------------

class Doubles {
  constructor() {
    this.values = new Float64Array(1 << 14);
    this.length = 0;
  }

  push(value) {
    if (this.length === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.length++] = value;
  }

  base64() {
    return Buffer.from(this.values.buffer, 0, this.length * 8).toString("base64");
  }
}

// -- msgpack: the little the hot path needs ------------------------------------------------
//
// Nearly every frame is a msg event, and of it only the body matters: rather than
// decode the whole map (a dozen objects and strings per frame), walk the bytes to
// the body and read its digits in place. The server lays every msg event out as
// {"event": "msg", "data": {"message": {...}}} (chatnet.wire.codec.event_frame);
// any other frame, or a msg event laid out otherwise, is decoded in full.

const MSG_HEAD = Buffer.from([
  0x82, 0xa5, ...Buffer.from("event"), 0xa3, ...Buffer.from("msg"),
  0xa4, ...Buffer.from("data"), 0x81, 0xa7, ...Buffer.from("message"),
]);
const BODY_KEY = [0xa4, ...Buffer.from("body")];

/** The position just after the msgpack value that starts at `b[pos]`. */
function skip(b, pos) {
  const c = b[pos];
  if (c <= 0x7f || c >= 0xe0) {
    return pos + 1; // fixint
  }
  if (c <= 0x8f) {
    return skipMany(b, pos + 1, 2 * (c & 0x0f)); // fixmap
  }
  if (c <= 0x9f) {
    return skipMany(b, pos + 1, c & 0x0f); // fixarray
  }
  if (c <= 0xbf) {
    return pos + 1 + (c & 0x1f); // fixstr
  }
  switch (c) {
    case 0xc0: case 0xc2: case 0xc3: return pos + 1; // nil, false, true
    case 0xc4: case 0xd9: return pos + 2 + b[pos + 1]; // bin8, str8
    case 0xc5: case 0xda: return pos + 3 + b.readUInt16BE(pos + 1);
    case 0xc6: case 0xdb: return pos + 5 + b.readUInt32BE(pos + 1);
    case 0xc7: return pos + 3 + b[pos + 1]; // ext8 (length, type, data)
    case 0xc8: return pos + 4 + b.readUInt16BE(pos + 1);
    case 0xc9: return pos + 6 + b.readUInt32BE(pos + 1);
    case 0xca: return pos + 5; // float32
    case 0xcb: return pos + 9; // float64
    case 0xcc: case 0xd0: return pos + 2;
    case 0xcd: case 0xd1: return pos + 3;
    case 0xce: case 0xd2: return pos + 5;
    case 0xcf: case 0xd3: return pos + 9;
    case 0xd4: return pos + 3; // fixext 1, 2, 4, 8, 16
    case 0xd5: return pos + 4;
    case 0xd6: return pos + 6;
    case 0xd7: return pos + 10;
    case 0xd8: return pos + 18;
    case 0xdc: return skipMany(b, pos + 3, b.readUInt16BE(pos + 1));
    case 0xdd: return skipMany(b, pos + 5, b.readUInt32BE(pos + 1));
    case 0xde: return skipMany(b, pos + 3, 2 * b.readUInt16BE(pos + 1));
    case 0xdf: return skipMany(b, pos + 5, 2 * b.readUInt32BE(pos + 1));
    default: throw new Error(`not msgpack: byte 0x${Number(c).toString(16)}`);
  }
}

function skipMany(b, pos, n) {
  let at = pos;
  for (let i = 0; i < n; i++) {
    at = skip(b, at);
  }
  return at;
}

/** Where the body's str starts in the msg event at `b[start]`; -1 if it is not one. */
function msgBodyAt(b, start) {
  for (let i = 0; i < MSG_HEAD.length; i++) {
    if (b[start + i] !== MSG_HEAD[i]) {
      return -1;
    }
  }
  let pos = start + MSG_HEAD.length;
  const c = b[pos];
  let n;
  if (c >= 0x80 && c <= 0x8f) {
    n = c & 0x0f;
    pos += 1;
  } else if (c === 0xde) {
    n = b.readUInt16BE(pos + 1);
    pos += 3;
  } else {
    return -1;
  }
  for (; n > 0; n--) {
    if (b[pos] === BODY_KEY[0] && b[pos + 1] === BODY_KEY[1] && b[pos + 2] === BODY_KEY[2]
        && b[pos + 3] === BODY_KEY[3] && b[pos + 4] === BODY_KEY[4]) {
      return pos + 5;
    }
    pos = skip(b, skip(b, pos));
  }
  return -1;
}

/** The first position in `b[from:stop]` holding a space, or `stop`. */
function spaceOrEnd(b, from, stop) {
  let i = from;
  while (i < stop && b[i] !== 0x20) {
    i++;
  }
  return i;
}

/** The decimal number written in ASCII digits at `b[from:to]`. */
function digits(b, from, to) {
  if (to <= from) {
    throw new Error("a message body without its number");
  }
  let value = 0;
  for (let i = from; i < to; i++) {
    const d = b[i] - 0x30;
    if (d < 0 || d > 9) {
      throw new Error(`a message body that is not "k send_ns padding": byte ${b[i]}`);
    }
    value = value * 10 + d;
  }
  return value;
}

// -- one client ------------------------------------------------------------------------------

// Ids (room_id) are 64-bit: over 2^53, so they travel as decimal strings in the params
// and as BigInt here, which msgpack encodes as a 64-bit integer.
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);
const encoder = new Encoder({ useBigInt64: true });
const decoder = new Decoder();

class Client {
  constructor(index, token, gen) {
    this.index = index;
    this.token = token;
    this.gen = gen;
    this.socket = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> [onResult, onError]
    this.rest = null; // bytes of an incomplete frame
    this.closed = false;
    this.got = 0; // deliveries of window messages
    this.other = 0; // deliveries of warm-up messages
  }

  /** TLS (server verified against the CA, as 127.0.0.1), hello, auth.resume. */
  open(port, ca) {
    return new Promise((resolve, reject) => {
      // onread: TLS decrypts straight into one buffer shared by every client and calls
      // back with the length, without Node's stream machinery (a Buffer, a push and a
      // 'data' event per read). Safe to share: each callback is done with it on return.
      const socket = tls.connect({
        host: HOST, port, ca, ALPNProtocols: [ALPN], minVersion: "TLSv1.2",
        onread: { buffer: READ_BUFFER, callback: (length, buffer) => this.received(buffer, length) },
      });
      this.socket = socket;
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`client ${this.index}: no answer to hello within 15 s`));
      }, HELLO_TIMEOUT_MS);
      socket.setNoDelay(true);
      socket.on("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`client ${this.index}: ${err.message}`));
      });
      socket.on("close", () => this.lost());
      socket.once("secureConnect", () => {
        this.request("session.hello", { protocol: 1, client: CLIENT }, () => {
          clearTimeout(timer);
          this.request("auth.resume", { token: this.token }, () => {
            socket.on("close", () => this.gen.connectionLost());
            resolve(this);
          }, (error) => reject(new Error(`client ${this.index}: auth.resume: ${error.code}`)));
        }, (error) => {
          clearTimeout(timer);
          reject(new Error(`client ${this.index}: session.hello: ${error.code}`));
        });
      });
    });
  }

  /** Send a request; the callbacks get the result map or the error map. Throws if closed. */
  request(op, args, onResult, onError) {
    if (this.closed) {
      throw new Error("connection closed");
    }
    const id = this.nextId++;
    const payload = encoder.encode({ id, op, args });
    const frame = Buffer.allocUnsafe(4 + payload.length);
    frame.writeUInt32BE(payload.length, 0);
    frame.set(payload, 4);
    this.pending.set(id, [onResult, onError]);
    this.socket.write(frame);
  }

  lost() {
    this.closed = true;
    const pending = this.pending;
    this.pending = new Map();
    for (const [, onError] of pending.values()) {
      onError({ code: "unavailable", message: "connection closed" });
    }
  }

  /** `length` bytes arrived in `buffer` (READ_BUFFER: valid only until we return). */
  received(buffer, length) {
    let data = buffer;
    let end = length;
    if (this.rest !== null) {
      data = Buffer.concat([this.rest, buffer.subarray(0, length)]);
      end = data.length;
      this.rest = null;
    }
    let pos = 0;
    let t = -1; // the time of arrival, read once per chunk and only if needed
    while (end - pos >= 4) {
      const length = data.readUInt32BE(pos);
      if (length === 0 || length > MAX_FRAME) {
        log(`client ${this.index}: bad frame length ${length}; closing`);
        this.socket.destroy();
        return;
      }
      if (end - pos - 4 < length) {
        break;
      }
      if (t < 0) {
        t = now();
      }
      this.frame(data, pos + 4, pos + 4 + length, t);
      pos += 4 + length;
    }
    if (pos < end) {
      this.rest = Buffer.from(data.subarray(pos, end)); // a copy: the buffer is reused
    }
    return true;
  }

  /** One frame, `b[start:end]`. */
  frame(b, start, end, t) {
    const at = msgBodyAt(b, start);
    if (at >= 0) {
      this.body(b, at, t);
      return;
    }
    const message = decoder.decode(b.subarray(start, end));
    if (message.event === "msg") {
      // A msg event laid out otherwise than the server's (not seen so far).
      const body = Buffer.from(encoder.encode(message.data.message.body));
      this.body(body, 0, t);
    } else if (message.id !== undefined) {
      const callbacks = this.pending.get(message.id);
      if (callbacks !== undefined) {
        this.pending.delete(message.id);
        if (message.error !== undefined) {
          callbacks[1](message.error);
        } else {
          callbacks[0](message.result, t);
        }
      }
    }
    // Other events (presence, errors, session.ended) are of no interest here.
  }

  /** A delivered message's body, the msgpack str at `b[at]`: "k send_ns padding". */
  body(b, at, t) {
    const c = b[at];
    let i;
    let stop;
    if (c >= 0xa0 && c <= 0xbf) {
      i = at + 1;
      stop = i + (c & 0x1f);
    } else if (c === 0xd9) {
      i = at + 2;
      stop = i + b[at + 1];
    } else if (c === 0xda) {
      i = at + 3;
      stop = i + b.readUInt16BE(at + 1);
    } else {
      i = at + 5;
      stop = i + b.readUInt32BE(at + 1);
    }
    const k = digits(b, i, (i = spaceOrEnd(b, i, stop)));
    const gen = this.gen;
    if (gen.kStart <= k && k < gen.kEnd) {
      this.got += 1;
      // send_ns = ms * 1e6 + sub: whole milliseconds and the rest, kept apart so that
      // every double stays small and exact.
      const from = i + 1;
      const to = spaceOrEnd(b, from, stop);
      const ms = digits(b, from, to - 6);
      const sub = digits(b, to - 6, to);
      gen.latencies.push((BASE_MS - ms) + (t - sub / 1e6));
    } else {
      this.other += 1;
    }
  }

  abort() {
    if (this.socket !== null) {
      this.socket.destroy();
    }
  }
}

// -- the generator ---------------------------------------------------------------------------

/** Messages of the window sent to room index `room` (fanout.expected_in_room). */
function expectedPerRoom(rooms, senders, kStart, kEnd) {
  const out = new Array(rooms).fill(0);
  for (let k = kStart; k < kEnd; k++) {
    out[(k % senders) % rooms] += 1;
  }
  return out;
}

/** Nearest-rank percentile of an ascending array (fanout._percentile). */
function percentile(ordered, q) {
  if (ordered.length === 0) {
    return NaN;
  }
  const rank = Math.max(1, Math.ceil((q / 100) * ordered.length));
  return ordered[Math.min(rank, ordered.length) - 1];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Generator {
  constructor(p) {
    this.p = p;
    this.kStart = p.k_start;
    this.kEnd = p.k_end;
    this.latencies = new Doubles();
    this.ackLatencies = new Doubles();
    this.lostConnections = 0;
    this.stopping = false;
  }

  connectionLost() {
    if (!this.stopping) {
      this.lostConnections += 1;
    }
  }

  async connectAll() {
    const { p } = this;
    const ca = fs.readFileSync(p.ca);
    const clients = new Array(p.users.length);
    let next = 0;
    const lane = async () => {
      while (next < p.users.length) {
        const n = next++;
        const [index, , token] = p.users[n];
        clients[n] = await new Client(index, token, this).open(p.port, ca);
      }
    };
    const lanes = [];
    for (let i = 0; i < Math.max(1, p.connect_concurrency); i++) {
      lanes.push(lane());
    }
    await Promise.all(lanes);
    this.clients = clients;
  }

  /** Pings, sends, drain; returns the report. */
  async run(t0) {
    const { p, clients } = this;
    const { rate, senders } = p;
    const roomIds = p.room_ids.map((id) => BigInt(id));
    const t0ms = t0 * 1000 - BASE_MS;

    // Clients ping every 30 s (PROTOCOL.md 3.7), at spread-out phases; the first
    // ping of client n comes 30 s after its phase (LoopingCall(now=False)).
    const pingTimers = [];
    const noop = () => {};
    clients.forEach((client, n) => {
      const ping = () => {
        try {
          client.request("session.ping", {}, noop, noop);
        } catch {
          clearInterval(pingTimers[n]);
        }
      };
      pingTimers[n] = setTimeout(() => {
        pingTimers[n] = setInterval(ping, PING_EVERY_MS);
      }, (PING_EVERY_MS * n) / clients.length);
    });

    // Message k is due at t0 + k / rate and goes out from sender k % senders.
    const senderConns = new Map();
    for (const client of clients) {
      if (client.index < senders) {
        senderConns.set(client.index, client);
      }
    }
    const mine = [...senderConns.keys()].sort((a, b) => a - b);
    const pad = "x".repeat(p.body_bytes);
    const prefix = p.client_msg_prefix ?? "bench";
    let sent = 0;
    let acked = 0;
    let errors = 0;
    const lags = [];

    let cycle = 0;
    let position = 0;
    const advance = () => {
      if (mine.length === 0) {
        return null;
      }
      const k = cycle * senders + mine[position];
      if (k >= this.kEnd) {
        return null;
      }
      position += 1;
      if (position === mine.length) {
        position = 0;
        cycle += 1;
      }
      return k;
    };
    let nextK = advance();
    const due = (k) => t0ms + (k * 1000) / rate;

    await new Promise((resolve) => {
      const tick = () => {
        let t = now();
        while (nextK !== null && due(nextK) <= t) {
          const k = nextK;
          const counted = this.kStart <= k && k < this.kEnd;
          const client = senderConns.get(k % senders);
          const sentAt = now();
          if (counted) {
            sent += 1;
            lags.push(sentAt - due(k));
          }
          const failed = (error) => {
            if (counted) {
              errors += 1;
            }
            if (!this.errorLogged) {
              this.errorLogged = true;
              log(`msg.send ${k}: ${error ? `${error.code}: ${error.message}` : "not sent"}`);
            }
          };
          const onAck = (_result, at) => {
            if (counted) {
              acked += 1;
              this.ackLatencies.push(at - sentAt);
            }
          };
          try {
            client.request("msg.send", {
              room_id: roomIds[(k % senders) % roomIds.length],
              body: `${k} ${epochNs(sentAt)} ${pad}`,
              client_msg_id: `${prefix}-${k}`,
            }, onAck, failed);
          } catch {
            failed(); // the connection is closed: the send is lost
          }
          nextK = advance();
          t = now();
        }
        if (nextK === null) {
          resolve();
        } else {
          setTimeout(tick, Math.max(0, due(nextK) - now()));
        }
      };
      if (mine.length > 0) {
        setTimeout(tick, Math.max(0, t0ms - now()));
      } else {
        resolve();
      }
    });

    // Drain: until every client has every window message, or the drain time is over.
    const rooms = roomIds.length;
    const perRoom = expectedPerRoom(rooms, senders, this.kStart, this.kEnd);
    const expected = clients.map((client) => perRoom[client.index % rooms]);
    const drainUntil = Math.max(now(), due(this.kEnd)) + p.drain * 1000;
    while (now() < drainUntil) {
      if (clients.every((client, n) => client.got >= expected[n]) && acked + errors >= sent) {
        break;
      }
      await sleep(50);
    }

    this.stopping = true;
    for (const timer of pingTimers) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    let delivered = 0;
    let missing = 0;
    let surplus = 0;
    let warmup = 0;
    let complete = 0;
    clients.forEach((client, n) => {
      delivered += client.got;
      missing += Math.max(0, expected[n] - client.got);
      surplus += Math.max(0, client.got - expected[n]);
      warmup += client.other;
      if (client.got >= expected[n]) {
        complete += 1;
      }
    });
    lags.sort((a, b) => a - b);
    return {
      pid: process.pid, clients: clients.length, senders: mine.length,
      sent, acked, send_errors: errors,
      delivered, missing, surplus,
      warmup_deliveries: warmup,
      clients_complete: complete,
      lost_connections: this.lostConnections,
      send_lag_max_ms: lags.length ? lags[lags.length - 1] : 0.0,
      send_lag_p99_ms: lags.length ? percentile(lags, 99) : 0.0,
      latencies: this.latencies.base64(),
      ack_latencies: this.ackLatencies.base64(),
    };
  }
}

// -- the parent's side: JSON lines on stdin and stdout --------------------------------------

function send(object) {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(object)}\n`, resolve));
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  const iterator = lines[Symbol.asyncIterator]();
  const nextLine = async () => {
    const { value, done } = await iterator.next();
    if (done) {
      log("the parent closed stdin; exiting");
      process.exit(1);
    }
    return JSON.parse(value);
  };

  const params = await nextLine();
  const gen = new Generator(params);
  await gen.connectAll();
  await send({ ready: gen.clients.length });
  const { t0 } = await nextLine();
  const report = await gen.run(t0);
  await send({ report });
  for (const client of gen.clients) {
    client.abort();
  }
  await sleep(200);
  process.exit(0);
}

// Run as a program (imported, e.g. to try the helpers, it does nothing).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    log(`failed: ${err.stack || err}`);
    process.exit(1);
  });
}

export { digits, msgBodyAt, skip };
