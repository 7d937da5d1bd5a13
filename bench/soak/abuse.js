'use strict';
// One abusive client, of one class, for the abusive phase. Started by soak.js with fork();
// gets its settings in a 'start' message, stops at its deadline or on a 'stop' message,
// answers with one 'result' message and exits.
//
// Classes (each the abuse one of Flow's limits in docs/SECURITY.md exists for):
//   conns   idle TCP connections that send nothing, and slowloris connections that send a
//           request head a byte at a time; both reopened as soon as Flow closes them
//   flood   minting socket tokens and opening /events sockets with them, each token twice
//   import  POST /leads/import of thousands of rows, one after another
//   voice   /voice sessions that stream audio and never end the utterance
//   search  GET /leads?q=<tens of thousands of characters> at a steady rate
//   hammer  a key with a small rate limit sending far more than it
//
// Every loop checks the deadline; every request and handshake has a timeout.

const crypto = require('crypto');
const net = require('net');
const WebSocket = require('ws');
const lib = require('./lib');

let stopped = false;
const stopWaiters = [];
// The deadline and a 'stop' message both end here.
function stop() {
  stopped = true;
  for (const w of stopWaiters.splice(0)) w();
}
// Sleeps `ms`, or less if the run stops meanwhile.
function pause(ms) {
  return new Promise((resolve) => {
    if (stopped) return resolve();
    const waiter = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      const i = stopWaiters.indexOf(waiter);
      if (i >= 0) stopWaiters.splice(i, 1);
      resolve();
    }, ms);
    stopWaiters.push(waiter);
  });
}
const untilStop = () => pause(2 ** 31 - 1);

// Calls fn on a fixed schedule of `rate` per second until stopped, skipping a call (and
// counting it) when `maxInFlight` are still unanswered.
function ticker(rate, maxInFlight, fn, deadline) {
  const state = { inFlight: 0, skipped: 0, sent: 0, clientErrors: {} };
  const period = 1000 / rate;
  let next = Date.now();
  const timer = setInterval(() => {
    const now = Date.now();
    while (next <= now && !stopped && now < deadline) {
      next += period;
      if (state.inFlight >= maxInFlight) {
        state.skipped++;
        continue;
      }
      state.inFlight++;
      state.sent++;
      Promise.resolve()
        .then(fn)
        .catch((e) => lib.bump(state.clientErrors, String(e && e.message ? e.message : e).slice(0, 60)))
        .finally(() => { state.inFlight--; });
    }
  }, 5);
  return { state, done: untilStop().then(() => clearInterval(timer)) };
}

// Opens a WebSocket and resolves to '101' (the socket, open, in `.socket`) or to the
// refusal's label ("429 too_many_sockets", "ECONNRESET", "timeout").
function openSocket(url, options) {
  return new Promise((resolve) => {
    let settled = false;
    const s = new WebSocket(url, { handshakeTimeout: 5000, ...options });
    const settle = (label) => {
      if (settled) return;
      settled = true;
      resolve({ label, socket: label === '101' ? s : null });
    };
    s.on('open', () => settle('101'));
    s.on('unexpected-response', (_req, res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        settle(lib.outcomeLabel({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
        s.terminate();
      });
      res.on('error', () => settle(`${res.statusCode}`));
    });
    s.on('error', (e) => settle(e.code || e.message));
  });
}

// --- conns: idle and slowloris ----------------------------------------------------------

async function conns(cfg, deadline) {
  const headerMs = cfg.headerTimeoutMs;
  const make = () => ({
    slots: 0, opened: 0, open: 0, maxOpen: 0, connectErrors: {}, errors: {}, answers: {},
    timeoutCloses: 0, timeoutLifetime: new lib.Histogram(),
    earlyCloses: 0, earlyLifetime: new lib.Histogram(), outlived: 0, maxOpenPerAddress: {},
  });
  const st = { idle: make(), slowloris: make() };
  const live = new Set();
  const openPerAddress = {};
  // A request head that never ends: the slowloris client sends it one byte at a time.
  const head = `GET /leads HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'a'.repeat(100_000)}`;

  const openOne = (kind, address) => {
    if (stopped || Date.now() >= deadline) return;
    const s = st[kind];
    const sock = net.connect({ host: '127.0.0.1', port: cfg.port, localAddress: address });
    let connectedAt = null;
    let drip = null;
    let sentBytes = 0;
    let answered = false;
    const entry = { sock, kind, get connectedAt() { return connectedAt; } };
    sock.setNoDelay(true);
    sock.on('connect', () => {
      connectedAt = Date.now();
      s.opened++;
      s.open++;
      s.maxOpen = Math.max(s.maxOpen, s.open);
      openPerAddress[address] = (openPerAddress[address] || 0) + 1;
      s.maxOpenPerAddress[address] = Math.max(s.maxOpenPerAddress[address] || 0, openPerAddress[address]);
      live.add(entry);
      if (kind === 'slowloris') {
        const step = () => sock.write(head[sentBytes++ % head.length]);
        step();
        drip = setInterval(step, cfg.slowlorisGapMs);
      }
    });
    sock.on('data', (chunk) => {
      if (answered) return;
      answered = true;
      // A refusal is answered once ("HTTP/1.1 429 ..." with Flow's JSON error) and closed.
      const text = chunk.toString('utf8');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
      const code = /"code":"([a-z_]+)"/.exec(text);
      lib.bump(s.answers, `${status ? status[1] : '?'}${code ? ` ${code[1]}` : ''}`);
    });
    sock.on('error', (e) => lib.bump(connectedAt === null ? s.connectErrors : s.errors, e.code || e.message));
    sock.on('close', () => {
      clearInterval(drip);
      let delay = 1000;
      if (connectedAt !== null) {
        live.delete(entry);
        s.open--;
        openPerAddress[address]--;
        const lifetime = Date.now() - connectedAt;
        // Flow closes an accepted connection that sends no complete head after the header
        // timeout; one over a cap within about 2 s (the refusal's deadline).
        if (lifetime >= 0.8 * headerMs) {
          s.timeoutCloses++;
          s.timeoutLifetime.record(lifetime * 1000);
          delay = 50 + Math.random() * 200;
        } else {
          s.earlyCloses++;
          s.earlyLifetime.record(lifetime * 1000);
        }
      }
      if (!stopped) setTimeout(() => openOne(kind, address), delay + Math.random() * 500);
    });
  };

  // Ramp the connections up over a few seconds rather than in one burst of SYNs.
  const plan = [];
  for (let i = 0; i < cfg.idleConns; i++) plan.push(['idle', cfg.idleAddresses[i % cfg.idleAddresses.length]]);
  for (let i = 0; i < cfg.slowlorisConns; i++) plan.push(['slowloris', cfg.slowlorisAddress]);
  for (let i = 0; i < plan.length && !stopped; i++) {
    st[plan[i][0]].slots++;
    openOne(...plan[i]);
    if (i % 100 === 99) await lib.sleep(50);
  }
  await untilStop();
  stopped = true;
  const now = Date.now();
  for (const e of live) {
    // Still open well past the header timeout on this side's clock: Flow did not enforce
    // it, or had not even accepted the connection yet (it waits in the listen backlog).
    if (e.connectedAt !== null && now - e.connectedAt > headerMs + 5000) st[e.kind].outlived++;
    e.sock.destroy();
  }
  for (const s of Object.values(st)) {
    s.timeoutLifetime = s.timeoutLifetime.toJSON();
    s.earlyLifetime = s.earlyLifetime.toJSON();
  }
  return st;
}

// --- flood: socket tokens and /events sockets ---------------------------------------------

async function flood(cfg, deadline) {
  const perKey = cfg.keys.map(() => ({ mints: {}, opens: {}, reuses: {}, closes: {}, held: 0, maxHeld: 0 }));
  const held = new Set();
  let maxHeldTotal = 0;
  const tickers = cfg.keys.map((key, k) => {
    const address = cfg.addresses[k % cfg.addresses.length];
    const agent = lib.keepAliveAgent(8, address);
    const st = perKey[k];
    return ticker(cfg.rate, 8, async () => {
      const minted = await lib.request({
        url: cfg.url, method: 'POST', path: '/events/token', agent, localAddress: address, timeoutMs: 5000,
        headers: { 'x-tenant-key': key, 'x-source-app': 'flood' },
      });
      lib.bump(st.mints, lib.outcomeLabel(minted));
      if (minted.status !== 201 || stopped) return;
      const url = `${cfg.wsUrl}/events?token=${encodeURIComponent(JSON.parse(minted.body).token)}`;
      const first = await openSocket(url, { localAddress: address });
      lib.bump(st.opens, first.label);
      if (first.socket) hold(first.socket, st);
      // The same token again: Flow must refuse it (single use). Only a reuse after a socket
      // opened is a breach: when the first handshake timed out on this side, Flow may never
      // have seen the token.
      const again = await openSocket(url, { localAddress: address });
      lib.bump(st.reuses, `${again.label}${first.label === '101' ? '' : ` (first: ${first.label})`}`);
      if (again.socket) hold(again.socket, st);
    }, deadline);
  });
  function hold(socket, st) {
    if (stopped) return socket.terminate();
    held.add(socket);
    st.held++;
    st.maxHeld = Math.max(st.maxHeld, st.held);
    maxHeldTotal = Math.max(maxHeldTotal, held.size);
    socket.on('message', () => {});
    socket.on('error', () => {});
    socket.on('close', (code) => {
      held.delete(socket);
      st.held--;
      if (!stopped) lib.bump(st.closes, String(code));
    });
  }
  await Promise.all(tickers.map((t) => t.done));
  stopped = true;
  for (const s of held) s.terminate();
  return { perKey, maxHeldTotal, attempts: tickers.map((t) => t.state) };
}

// --- import: big lead imports, one after another ------------------------------------------

async function imports(cfg, deadline) {
  const st = { posted: {}, completed: 0, failed: {}, rowsCreated: 0, rowsFailed: 0, duration: new lib.Histogram(), unfinished: 0, running: 0, polls: {} };
  const headers = { 'x-tenant-key': cfg.key };
  const loop = async (n) => {
    const agent = lib.keepAliveAgent(2, cfg.address);
    for (let round = 1; !stopped && Date.now() < deadline; round++) {
      // Unique emails: the same file again would be the same job, and known emails are skipped.
      const tag = `${n}-${round}-${crypto.randomBytes(3).toString('hex')}`;
      const rows = ['firstName,lastName,email,phone,company,source'];
      for (let i = 0; i < cfg.rows; i++) rows.push(`Import,Row${i},imp-${tag}-${i}@soak.test,+4512345678,Abuse Inc,import`);
      const t0 = Date.now();
      const posted = await lib.request({
        url: cfg.url, method: 'POST', path: '/leads/import', agent, localAddress: cfg.address, timeoutMs: 30_000,
        headers: { ...headers, 'content-type': 'text/csv' }, body: rows.join('\n'),
      });
      lib.bump(st.posted, lib.outcomeLabel(posted));
      if (posted.status !== 202) {
        await lib.sleep(1000);
        continue;
      }
      const { jobId } = JSON.parse(posted.body);
      st.running++;
      let finished = false;
      while (!stopped && Date.now() < deadline && Date.now() - t0 < cfg.jobTimeoutMs) {
        await pause(cfg.pollMs);
        const job = await lib.request({ url: cfg.url, path: `/jobs/${jobId}`, agent, localAddress: cfg.address, headers, timeoutMs: 10_000, maxBody: 64 << 20 });
        if (job.status !== 200) {
          lib.bump(st.polls, lib.outcomeLabel(job));
          continue;
        }
        const j = JSON.parse(job.body);
        if (j.state === 'completed') {
          st.completed++;
          st.rowsCreated += j.result?.created ?? 0;
          st.rowsFailed += j.result?.failed ?? 0;
          st.duration.record((Date.now() - t0) * 1000);
          finished = true;
          break;
        }
        if (['dead', 'failed', 'cancelled'].includes(j.state)) {
          lib.bump(st.failed, j.state);
          finished = true;
          break;
        }
      }
      st.running--;
      if (!finished) st.unfinished++;
      if (cfg.pauseMs > 0) await pause(cfg.pauseMs);
    }
    agent.destroy();
  };
  // At the stop the figures are taken as they are: an upload or a poll under way is not
  // waited for (it has its own timeout, and the process exits after reporting).
  await Promise.race([Promise.all(Array.from({ length: cfg.loops }, (_, n) => loop(n))), untilStop()]);
  st.duration = st.duration.toJSON();
  return st;
}

// --- voice: sessions that buffer audio and never end the utterance -------------------------

async function voice(cfg, deadline) {
  const st = { attempts: 0, opens: {}, frames: {}, closes: {}, open: 0, maxOpen: 0, bytesSent: 0 };
  const live = new Set();
  const chunk = Buffer.alloc(cfg.chunkBytes, 1);
  const session = async (key, id) => {
    while (!stopped && Date.now() < deadline) {
      st.attempts++;
      const opened = await openSocket(`${cfg.wsUrl}/voice/${id}`, { headers: { 'x-tenant-key': key }, localAddress: cfg.address });
      lib.bump(st.opens, opened.label);
      if (!opened.socket) {
        // Refused (the caps): keep trying, as an abusive client would, but not in a spin.
        await pause(cfg.retryMs);
        continue;
      }
      const s = opened.socket;
      live.add(s);
      st.open++;
      st.maxOpen = Math.max(st.maxOpen, st.open);
      let listening = false;
      let restartAt = 0;
      const start = () => s.send(JSON.stringify({ type: 'start', format: 'audio/wav', language: 'en' }));
      // The server's `ready` may have come with the handshake, before this listener: the
      // session starts its utterance right away instead of waiting for it.
      start();
      s.on('message', (data, isBinary) => {
        if (isBinary) return;
        let frame;
        try {
          frame = JSON.parse(data);
        } catch {
          return;
        }
        if (frame.type === 'listening') listening = true;
        else if (frame.type === 'error') {
          lib.bump(st.frames, frame.code);
          // The utterance was dropped (too long, over the process's audio budget, or timed
          // out): start another one and go on buffering, after a pause so that a full
          // budget is not answered in a tight loop.
          listening = false;
          restartAt = Date.now() + cfg.restartMs;
        }
      });
      const pump = setInterval(() => {
        if (s.readyState !== WebSocket.OPEN) return;
        if (!listening) {
          if (restartAt && Date.now() >= restartAt) {
            restartAt = 0;
            start();
          }
          return;
        }
        // A server that stops reading must not make this client buffer without bound.
        if (s.bufferedAmount > 4 * cfg.chunkBytes) return;
        s.send(chunk, { binary: true });
        st.bytesSent += chunk.length;
      }, cfg.chunkEveryMs);
      await new Promise((resolve) => {
        s.on('close', (code) => {
          clearInterval(pump);
          live.delete(s);
          st.open--;
          if (!stopped) lib.bump(st.closes, String(code));
          resolve();
        });
        s.on('error', () => {});
      });
      await pause(cfg.retryMs);
    }
  };
  const sessions = [];
  cfg.keys.forEach((key, k) => {
    for (let i = 0; i < cfg.sessionsPerKey; i++) sessions.push(session(key, `soak-${k}-${i}`));
  });
  await untilStop();
  stopped = true;
  for (const s of live) s.terminate();
  await Promise.race([Promise.all(sessions), lib.sleep(1000)]);
  return st;
}

// --- search: very long q -------------------------------------------------------------------

async function search(cfg, deadline) {
  const st = { outcomes: {}, latency: new lib.Histogram() };
  const agent = lib.keepAliveAgent(16, cfg.address);
  // Letters that match nothing, in a few variants so no layer can cache the answer.
  const variants = Array.from({ length: 8 }, () => {
    const bytes = crypto.randomBytes(cfg.chars);
    let q = '';
    for (const b of bytes) q += String.fromCharCode(97 + (b % 26));
    return q;
  });
  let n = 0;
  const t = ticker(cfg.rate, 16, async () => {
    const t0 = lib.hrUs();
    const r = await lib.request({
      url: cfg.url, path: `/leads?q=${variants[n++ % variants.length]}`, agent, localAddress: cfg.address,
      headers: { 'x-tenant-key': cfg.key }, timeoutMs: 30_000,
    });
    st.latency.record(lib.hrUs() - t0);
    lib.bump(st.outcomes, lib.outcomeLabel(r));
  }, deadline);
  await t.done;
  agent.destroy();
  return { ...st, latency: st.latency.toJSON(), ticker: t.state };
}

// --- hammer: far over a small rate limit --------------------------------------------------

async function hammer(cfg, deadline) {
  const st = { outcomes: {}, missingRetryAfter: 0 };
  const agent = lib.keepAliveAgent(32, cfg.address);
  const started = Date.now();
  const t = ticker(cfg.rate, 32, async () => {
    const r = await lib.request({
      url: cfg.url, path: '/leads?limit=1', agent, localAddress: cfg.address,
      headers: { 'x-tenant-key': cfg.key }, timeoutMs: 10_000,
    });
    lib.bump(st.outcomes, lib.outcomeLabel(r));
    if (r.status === 429 && !r.headers['retry-after']) st.missingRetryAfter++;
  }, deadline);
  await t.done;
  agent.destroy();
  return { ...st, seconds: (Date.now() - started) / 1000, ticker: t.state };
}

const CLASSES = { conns, flood, import: imports, voice, search, hammer };

process.on('message', async (msg) => {
  if (msg.type === 'stop') return stop();
  if (msg.type !== 'start') return;
  const cfg = msg.config;
  const deadline = Date.now() + cfg.durationMs;
  setTimeout(stop, cfg.durationMs);
  const t0 = Date.now();
  let result;
  try {
    result = await CLASSES[cfg.cls](cfg, deadline);
  } catch (e) {
    result = { crashed: String(e && e.stack ? e.stack : e) };
  }
  const cpu = process.cpuUsage();
  process.send({ type: 'result', cls: cfg.cls, result: { ...result, cpuUs: cpu.user + cpu.system, ranMs: Date.now() - t0 } }, () => process.exit(0));
});
