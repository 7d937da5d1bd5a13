'use strict';
// A client process: holds its share of the N connections to one server (Flow's /events
// with `ws`, or socket.io with `socket.io-client`), times every event it receives against
// the writer's send time carried in the lead's notes, and reports to the orchestrator over
// IPC. Started by bench.js with child_process.fork; does nothing on its own.
//
// Notes format written by writer.js: "t=<process.hrtime.bigint() at send>;p=<phase>;i=<index>".

const { Histogram, hrNs } = require('./lib');

let cfg = null;
const sockets = [];
const phases = new Map(); // phase -> { n, hist, firstNs, lastNs }
let otherFrames = 0; // frames that are not a timed event (welcome, subscribed, ...)
let untimed = 0; // events without a parsable t=/p= marker
let closedAfterOpen = 0;
const closeCodes = {}; // code -> count, for sockets closed while the run expected them open
let closing = false;

function phaseStats(p) {
  let s = phases.get(p);
  if (!s) {
    s = { n: 0, hist: new Histogram(), firstNs: 0, lastNs: 0, seen: new Uint8Array(1 << 16), distinct: 0 };
    phases.set(p, s);
  }
  return s;
}

function recordTimed(sentNs, phase, index, nowNs) {
  const s = phaseStats(phase);
  s.n++;
  // Which events exist at all (any socket of this process got them): a lead whose POST
  // timed out at the writer may still have been broadcast.
  if (index < s.seen.length && !s.seen[index]) {
    s.seen[index] = 1;
    s.distinct++;
  }
  s.hist.record((nowNs - sentNs) / 1000);
  if (!s.firstNs) s.firstNs = nowNs;
  s.lastNs = nowNs;
}

// Parses "t=<digits>;p=<digits>;i=<digits>" starting at index i of a string.
function parseMarker(str, i) {
  if (str.charCodeAt(i) !== 116 /* t */ || str.charCodeAt(i + 1) !== 61 /* = */) return null;
  let j = i + 2;
  let t = 0;
  let c;
  while ((c = str.charCodeAt(j)) >= 48 && c <= 57) {
    t = t * 10 + (c - 48);
    j++;
  }
  if (str.charCodeAt(j) !== 59 /* ; */ || str.charCodeAt(j + 1) !== 112 /* p */) return null;
  j += 3;
  let p = 0;
  while ((c = str.charCodeAt(j)) >= 48 && c <= 57) {
    p = p * 10 + (c - 48);
    j++;
  }
  if (str.charCodeAt(j) !== 59 || str.charCodeAt(j + 1) !== 105 /* i */) return null;
  j += 3;
  let n = 0;
  while ((c = str.charCodeAt(j)) >= 48 && c <= 57) {
    n = n * 10 + (c - 48);
    j++;
  }
  return [t, p, n];
}

// Same on a Buffer (Flow's frames arrive as Buffers; no JSON.parse needed to time them).
function parseMarkerBuf(buf, i) {
  if (buf[i] !== 116 || buf[i + 1] !== 61) return null;
  let j = i + 2;
  let t = 0;
  let c;
  while ((c = buf[j]) >= 48 && c <= 57) {
    t = t * 10 + (c - 48);
    j++;
  }
  if (buf[j] !== 59 || buf[j + 1] !== 112) return null;
  j += 3;
  let p = 0;
  while ((c = buf[j]) >= 48 && c <= 57) {
    p = p * 10 + (c - 48);
    j++;
  }
  if (buf[j] !== 59 || buf[j + 1] !== 105) return null;
  j += 3;
  let n = 0;
  while ((c = buf[j]) >= 48 && c <= 57) {
    n = n * 10 + (c - 48);
    j++;
  }
  return [t, p, n];
}

const NOTES = Buffer.from('"notes":"');
const EVENT_PREFIX = Buffer.from('{"type":"event"');

function onFlowMessage(data) {
  const now = hrNs();
  // Frames are JSON text; an event frame starts with {"type":"event" (serde keeps field order).
  const i = data.indexOf(NOTES);
  if (i < 0) {
    otherFrames++;
    return;
  }
  const m = parseMarkerBuf(data, i + NOTES.length);
  if (!m || data.indexOf(EVENT_PREFIX) !== 0) {
    untimed++;
    return;
  }
  recordTimed(m[0], m[1], m[2], now);
}

function onSioEvent(frame) {
  const now = hrNs();
  const notes = frame && frame.event && frame.event.data && frame.event.data.lead && frame.event.data.lead.notes;
  const m = typeof notes === 'string' ? parseMarker(notes, 0) : null;
  if (!m) {
    untimed++;
    return;
  }
  recordTimed(m[0], m[1], m[2], now);
}

function noteClose(code) {
  if (closing) return;
  closedAfterOpen++;
  closeCodes[code] = (closeCodes[code] || 0) + 1;
}

// Opens one connection; resolves true once the server's welcome arrived, or with an error
// message.
function openFlow(timeoutMs) {
  const WebSocket = require('ws');
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok, err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(ok ? { ok: true } : { ok: false, err });
    };
    const timer = setTimeout(() => {
      finish(false, `no welcome within ${timeoutMs} ms`);
      try {
        ws.terminate();
      } catch {}
    }, timeoutMs);
    const ws = new WebSocket(cfg.url, {
      headers: { 'x-tenant-key': cfg.key, 'x-source-app': 'flow-web' },
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
    });
    ws.on('unexpected-response', (_req, res) => {
      finish(false, `HTTP ${res.statusCode} on upgrade`);
      ws.terminate();
    });
    ws.on('error', (e) => finish(false, e.code ? `${e.code}: ${e.message}` : e.message));
    ws.once('message', (data) => {
      if (data.indexOf('"type":"welcome"') >= 0) {
        otherFrames++;
        ws.on('message', onFlowMessage);
        sockets.push(ws);
        finish(true);
        ws.on('close', (code) => noteClose(code));
      } else {
        finish(false, `first frame was not a welcome: ${String(data).slice(0, 120)}`);
        ws.terminate();
      }
    });
    ws.on('close', (code, reason) => finish(false, `closed ${code} ${reason}`));
  });
}

function openSio(timeoutMs) {
  const { io } = require('socket.io-client');
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok, err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(ok ? { ok: true } : { ok: false, err });
    };
    const socket = io(cfg.url, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      timeout: timeoutMs,
      auth: { key: cfg.key },
    });
    const timer = setTimeout(() => {
      finish(false, `no welcome within ${timeoutMs} ms`);
      socket.close();
    }, timeoutMs);
    socket.on('connect_error', (e) => finish(false, `connect_error: ${e.message}`));
    socket.once('welcome', () => {
      otherFrames++;
      sockets.push(socket);
      socket.on('event', onSioEvent);
      socket.on('disconnect', (reason) => noteClose(reason));
      finish(true);
    });
    socket.on('disconnect', (reason) => finish(false, `disconnected: ${reason}`));
  });
}

async function connectAll() {
  const open = cfg.kind === 'flow' ? openFlow : openSio;
  const errors = {};
  let ok = 0;
  let failed = 0;
  let next = 0;
  const started = hrNs();
  const deadline = Date.now() + cfg.connectDeadlineMs;
  async function lane() {
    while (next < cfg.count && Date.now() < deadline) {
      next++;
      const r = await open(cfg.handshakeTimeoutMs);
      if (r.ok) ok++;
      else {
        failed++;
        errors[r.err] = (errors[r.err] || 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency, cfg.count) }, lane));
  const notTried = cfg.count - next;
  return { ok, failed, notTried, errors, ms: (hrNs() - started) / 1e6 };
}

function lastSeen(seen) {
  let k = seen.length;
  while (k > 0 && !seen[k - 1]) k--;
  return k;
}

function report(phase) {
  const s = phases.get(phase);
  const out = {
    open: sockets.length - closedAfterOpen,
    closedAfterOpen,
    closeCodes,
    untimed,
    otherFrames,
    n: s ? s.n : 0,
    seen: s ? Array.from(s.seen.subarray(0, lastSeen(s.seen))) : [],
    firstNs: s ? s.firstNs : 0,
    lastNs: s ? s.lastNs : 0,
    hist: s ? s.hist.toJSON() : new Histogram().toJSON(),
  };
  phases.delete(phase);
  return out;
}

process.on('message', async (msg) => {
  switch (msg.cmd) {
    case 'connect':
      cfg = msg;
      process.send({ re: 'connect', ...(await connectAll()) });
      break;
    case 'count': {
      const s = phases.get(msg.phase);
      process.send({ re: 'count', n: s ? s.n : 0, closedAfterOpen });
      break;
    }
    case 'report':
      process.send({ re: 'report', ...report(msg.phase) });
      break;
    case 'close':
      closing = true;
      for (const s of sockets) {
        try {
          if (cfg.kind === 'flow') s.terminate();
          else s.close();
        } catch {}
      }
      process.send({ re: 'close' }, () => process.exit(0));
      break;
  }
});
process.on('disconnect', () => process.exit(0));
