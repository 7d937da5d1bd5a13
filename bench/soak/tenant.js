'use strict';
// One well-behaved tenant: a fixed-rate mix of lead requests and a live /events socket,
// for one phase. Started by soak.js with fork(); gets its settings in a 'start' message,
// answers with one 'result' message and exits.
//
// Requests follow a fixed schedule (open loop): each one's latency counts from when the
// schedule meant to send it, so a server that stalls shows in the percentiles instead of
// silently slowing the client down (no coordinated omission).

const { monitorEventLoopDelay } = require('perf_hooks');
const WebSocket = require('ws');
const lib = require('./lib');

const OPS = ['create', 'list', 'get', 'status'];
// What each operation answers when all is well; anything else is an error.
const EXPECTED = { create: 201, list: 200, get: 200, status: 200 };

async function run(cfg) {
  const agent = lib.keepAliveAgent(64, cfg.localAddress);
  const headers = { 'x-tenant-key': cfg.key, 'x-source-app': cfg.app };
  const jsonHeaders = { ...headers, 'content-type': 'application/json' };
  const call = (method, path, body) => lib.request({
    url: cfg.url, method, path, body, agent, timeoutMs: cfg.timeoutMs, localAddress: cfg.localAddress,
    headers: body === undefined ? headers : jsonHeaders,
  });

  const stats = {};
  for (const op of [...OPS, 'event']) stats[op] = { hist: new lib.Histogram(), ok: 0, errors: {}, backlog: 0, skipped: 0 };
  const writer = { count: 0, samples: [] };
  const ws = { connects: 0, connectHist: new lib.Histogram(), refused: {}, closes: {}, events: 0 };

  // Leads this client made, for GET and for status changes; a lead is out of its pool
  // while a status change on it is in flight, so two changes never race (409).
  const recent = [];
  const fresh = [];
  const contacted = [];
  // Creates waiting for their LEAD_CREATED event: email -> send time.
  const awaiting = new Map();

  const loopDelay = monitorEventLoopDelay({ resolution: 5 });

  // Leads from before this phase (the seed, earlier phases) so that GET and status changes
  // have work from the first second. Not measured.
  const warm = await call('GET', '/leads?status=NEW&limit=100');
  if (warm.status === 200) {
    for (const lead of JSON.parse(warm.body).data || []) {
      recent.push(lead.id);
      fresh.push(lead.id);
    }
  }

  // --- the socket ------------------------------------------------------------------
  let socket = null;
  let lastSeq = null;
  let stopping = false;
  let welcomed = null;
  const welcome = new Promise((resolve) => { welcomed = resolve; });

  const connect = async () => {
    if (stopping) return;
    const t0 = lib.hrUs();
    // A browser-style client: mint a single-use token, then open the socket with it.
    const minted = await call('POST', '/events/token');
    if (minted.status !== 201) {
      lib.bump(ws.refused, `token ${lib.outcomeLabel(minted)}`);
      if (lib.outcomeLabel(minted).startsWith('503') || /writer/i.test(lib.errorMessage(minted))) writer.count++;
      setTimeout(connect, 2000);
      return;
    }
    const { token } = JSON.parse(minted.body);
    const s = new WebSocket(`${cfg.wsUrl}/events?token=${encodeURIComponent(token)}`, {
      localAddress: cfg.localAddress, handshakeTimeout: 10_000,
    });
    socket = s;
    let opened = false;
    let reconnecting = false;
    const again = (delay) => {
      if (reconnecting || stopping) return;
      reconnecting = true;
      setTimeout(connect, delay);
    };
    let refused = false;
    s.on('unexpected-response', (_req, res) => {
      refused = true;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        lib.bump(ws.refused, lib.outcomeLabel({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
        s.terminate();
        again(2000);
      });
    });
    s.on('error', (e) => {
      // Terminating a refused handshake raises an error of its own: counted once, above.
      if (!refused) lib.bump(ws.refused, e.code || e.message);
      again(2000);
    });
    s.on('open', () => { opened = true; });
    s.on('close', (code) => {
      if (opened && !stopping) lib.bump(ws.closes, String(code));
      again(1000);
    });
    s.on('message', (data) => {
      let frame;
      try {
        frame = JSON.parse(data);
      } catch {
        lib.bump(ws.refused, 'a frame that is not JSON');
        return;
      }
      if (frame.type === 'welcome') {
        ws.connects++;
        ws.connectHist.record(lib.hrUs() - t0);
        // Only lead creations matter to this client; resume from the last event seen so
        // that a reconnect loses nothing.
        s.send(JSON.stringify({ type: 'subscribe', eventTypes: ['LEAD_CREATED'] }));
        s.send(JSON.stringify({ type: 'resume', since: lastSeq ?? frame.seq }));
        welcomed();
      } else if (frame.type === 'event') {
        lastSeq = frame.seq;
        ws.events++;
        const email = frame.event?.data?.lead?.email;
        const sent = email && awaiting.get(email);
        if (sent) {
          awaiting.delete(email);
          stats.event.hist.record(lib.hrUs() - sent);
          stats.event.ok++;
        }
      } else if (frame.type === 'resync_required') {
        lastSeq = frame.seq;
      }
    });
  };
  connect();
  await Promise.race([welcome, lib.sleep(10_000)]);

  // --- the requests ----------------------------------------------------------------
  let seq = 0;
  let flip = false;
  const inFlight = Object.fromEntries(OPS.map((op) => [op, 0]));

  const issue = {
    create: () => {
      const email = `${cfg.label.toLowerCase()}-${cfg.phase}-${++seq}@soak.test`;
      awaiting.set(email, lib.hrUs());
      const body = JSON.stringify({ firstName: 'Soak', lastName: `Tenant${cfg.label}`, email, source: 'website' });
      return call('POST', '/leads', body).then((r) => {
        if (r.status === 201) {
          const id = JSON.parse(r.body).id;
          recent.push(id);
          if (recent.length > 2000) recent.splice(0, 1000);
          if (fresh.length < 5000) fresh.push(id);
        } else {
          awaiting.delete(email);
        }
        return r;
      });
    },
    list: () => call('GET', '/leads?limit=20'),
    get: () => (recent.length ? call('GET', `/leads/${recent[Math.floor(Math.random() * recent.length)]}`) : null),
    // NEW -> CONTACTED, then CONTACTED -> QUALIFIED: each lead takes two steps.
    status: () => {
      flip = !flip;
      const useContacted = contacted.length > 0 && (flip || fresh.length === 0);
      const pool = useContacted ? contacted : fresh;
      if (pool.length === 0) return null;
      const id = pool.shift();
      const next = useContacted ? 'QUALIFIED' : 'CONTACTED';
      return call('PATCH', `/leads/${id}/status`, JSON.stringify({ status: next })).then((r) => {
        if (r.status === 200 && next === 'CONTACTED') contacted.push(id);
        return r;
      });
    },
  };

  const fire = (op, scheduledUs) => {
    const s = stats[op];
    if (inFlight[op] >= cfg.maxInFlight) {
      s.backlog++;
      return;
    }
    const pending = issue[op]();
    if (pending === null) {
      s.skipped++;
      return;
    }
    inFlight[op]++;
    pending.catch((e) => ({ error: `client error: ${e.message}` })).then((r) => {
      inFlight[op]--;
      s.hist.record(lib.hrUs() - scheduledUs);
      if (r.status === EXPECTED[op]) {
        s.ok++;
        return;
      }
      lib.bump(s.errors, lib.outcomeLabel(r));
      const message = lib.errorMessage(r);
      if (r.status === 503 || /writer/i.test(message)) {
        writer.count++;
        if (writer.samples.length < 3) writer.samples.push(`${op}: ${lib.outcomeLabel(r)} ${message}`.trim());
      }
    });
  };

  const periodUs = 1e6 / cfg.rate;
  const start = lib.hrUs();
  const end = start + cfg.durationMs * 1000;
  const next = Object.fromEntries(OPS.map((op, k) => [op, start + (k * periodUs) / OPS.length]));
  loopDelay.enable();
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = lib.hrUs();
      for (const op of OPS) {
        while (next[op] <= now && next[op] < end) {
          fire(op, next[op]);
          next[op] += periodUs;
        }
      }
      if (now >= end) {
        clearInterval(timer);
        resolve();
      }
    }, 2);
  });
  loopDelay.disable();

  // Let the last answers and events arrive (bounded), then close.
  const drainUntil = Date.now() + cfg.timeoutMs;
  while (Date.now() < drainUntil && OPS.some((op) => inFlight[op] > 0)) await lib.sleep(20);
  const eventsUntil = Date.now() + 5000;
  while (Date.now() < eventsUntil && awaiting.size > 0) await lib.sleep(20);
  stats.event.errors = awaiting.size ? { 'not delivered within 5 s of the end': awaiting.size } : {};
  stopping = true;
  if (socket) socket.close(1000);
  agent.destroy();

  const cpu = process.cpuUsage();
  return {
    label: cfg.label,
    phase: cfg.phase,
    durationMs: cfg.durationMs,
    rate: cfg.rate,
    ops: Object.fromEntries(Object.entries(stats).map(([op, s]) => [op, { ...s, hist: s.hist.toJSON() }])),
    writer,
    ws: { ...ws, connectHist: ws.connectHist.toJSON() },
    cpuUs: cpu.user + cpu.system,
    loopDelayP99Us: loopDelay.percentile(99) / 1000,
    loopDelayMaxUs: loopDelay.max / 1000,
  };
}

process.on('message', async (msg) => {
  if (msg.type !== 'start') return;
  const result = await run(msg.config);
  process.send({ type: 'result', result }, () => process.exit(0));
});
