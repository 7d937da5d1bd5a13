'use strict';
// Orchestrator of the fan-out benchmark: Flow's /events gateway against a socket.io server
// broadcasting to a room, in the same run. Run it through ./bench/fanout/run.sh (which
// raises the fd limit, builds Flow and installs the npm packages). See README.md.

const { spawn, fork, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { Histogram, procTicks, machineTicks, rssKiB, threads, loadavg, hrNs } = require('./lib');

const HERE = __dirname;
const RUN_STAMP = new Date().toISOString().replace(/[:.]/g, '-');
const ROOT = path.resolve(HERE, '../..');

// --- Settings (environment) ------------------------------------------------------------
const env = (name, def) => (process.env[name] === undefined || process.env[name] === '' ? def : process.env[name]);
const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
const S = {
  flowBin: env('FLOW_BIN', null),
  flowBinDesc: env('FLOW_BIN_DESC', env('FLOW_BIN', '')),
  servers: list(env('SERVERS', 'flow,socketio')),
  sizes: list(env('SIZES', '1000,10000')).map(Number),
  rate: Number(env('RATE', '10')),
  durationS: Number(env('DURATION', '10')),
  sweepN: Number(env('SWEEP_N', '1000')),
  sweepRates: list(env('SWEEP_RATES', '10,20,30,40,50,75,100,150,200,300,400,600,800')).map(Number),
  sweepDurationS: Number(env('SWEEP_DURATION', '10')),
  clientProcs: Number(env('CLIENT_PROCS', '4')),
  clientNodeArgs: env('CLIENT_NODE_ARGS', '').split(' ').filter(Boolean),
  connectConcurrency: Number(env('CONNECT_CONCURRENCY', '32')), // per client process
  settleS: Number(env('SETTLE', '3')),
  // An unrecorded run before the measured ones: JIT warm-up for Node, caches for both.
  warmupS: Number(env('WARMUP', '5')),
  drainS: Number(env('DRAIN', '10')),
  p99TargetMs: Number(env('P99_TARGET_MS', '50')),
  // Before each scenario, wait (at most QUIET_WAIT s) until the machine's busy CPU over 2 s
  // is at most QUIET_PCT % of one core: another engineer's compile skews every number.
  quietPct: Number(env('QUIET_PCT', '30')),
  quietWaitS: Number(env('QUIET_WAIT', '300')),
  quietSamples: Number(env('QUIET_SAMPLES', '3')), // 2 s each
  busyElsePct: Number(env('BUSY_ELSE_PCT', '25')),
  busyRetries: Number(env('BUSY_RETRIES', '2')),
  results: env('RESULTS', path.join(ROOT, 'bench/RESULTS.md')),
  outDir: env('OUT_DIR', path.join(HERE, 'out')),
  runCommand: env('RUN_COMMAND', './bench/fanout/run.sh'),
};
const NAMES = { flow: 'Flow', socketio: 'socket.io' };

const log = (...a) => console.error(`[fanout ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- Process bookkeeping: everything this run starts, it stops (by pid) ------------------
const children = new Set();
function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}
function killAll() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
}
process.on('exit', killAll);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

// Request/answer over IPC: one outstanding call per child at a time.
function call(child, msg, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', onMsg);
      reject(new Error(`${msg.cmd}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    function onMsg(m) {
      if (m.re !== msg.cmd) return;
      clearTimeout(timer);
      child.off('message', onMsg);
      resolve(m);
    }
    child.on('message', onMsg);
    child.send(msg);
  });
}

// --- Servers --------------------------------------------------------------------------
function waitForLine(proc, re, what, timeoutMs) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not report its address within ${timeoutMs / 1000} s`)), timeoutMs);
    proc.stdout.on('data', (d) => {
      buf += d;
      const m = re.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited during startup (code ${code})`));
    });
  });
}

async function post(url, key) {
  const r = await fetch(new URL('/leads', url), {
    method: 'POST',
    headers: { 'x-tenant-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({ firstName: 'Bench', email: 'fanout@example.com', notes: 'warm-up' }),
    signal: AbortSignal.timeout(10_000),
  });
  await r.text();
  if (r.status !== 201 && r.status !== 200) throw new Error(`warm-up POST /leads answered ${r.status}`);
}

let serverSeq = 0;
async function startServer(kind) {
  const logFile = path.join(S.outDir, `${RUN_STAMP}-${++serverSeq}-${kind}.log`);
  const logStream = fs.createWriteStream(logFile);
  let proc;
  let url;
  let key;
  let dir = null;
  const stderr = [];
  if (kind === 'flow') {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flow-fanout-'));
    const data = path.join(dir, 'data');
    fs.mkdirSync(data);
    const flowEnv = { ...process.env, RUST_LOG: 'warn' };
    for (const k of Object.keys(flowEnv)) if (k.startsWith('FLOW_') || k === 'DATABASE_URL') delete flowEnv[k];
    const cli = (...args) => execFileSync(S.flowBin, ['--data-dir', data, ...args], { env: flowEnv, encoding: 'utf8', timeout: 30_000 });
    const tenantOut = cli('tenant', 'create', 'Bench');
    const slug = /^tenant:\s+(\S+)/m.exec(tenantOut)?.[1];
    if (!slug) throw new Error(`no tenant slug in: ${tenantOut}`);
    // Every new WebSocket counts against the key's per-minute limit: make it huge.
    const keyOut = cli('key', 'create', '--tenant', slug, '--name', 'bench', '--rate-limit', '1000000');
    key = /^api key:\s+(flow_sk_\S+)/m.exec(keyOut)?.[1];
    if (!key) throw new Error(`no api key in: ${keyOut}`);
    proc = track(spawn(S.flowBin, ['--data-dir', data, 'serve', '--host', '127.0.0.1', '--port', '0'], { env: flowEnv, stdio: ['ignore', 'pipe', 'pipe'] }));
    proc.stderr.on('data', (d) => {
      stderr.push(String(d));
      logStream.write(d);
    });
    url = await waitForLine(proc, /Flow is listening on (http:\/\/127\.0\.0\.1:\d+)/, 'flow', 30_000);
  } else {
    key = crypto.randomBytes(16).toString('hex');
    proc = track(spawn(process.execPath, [path.join(HERE, 'sio-server.js')], { env: { ...process.env, SIO_KEY: key }, stdio: ['ignore', 'pipe', 'pipe'] }));
    proc.stderr.on('data', (d) => {
      stderr.push(String(d));
      logStream.write(d);
    });
    url = await waitForLine(proc, /socket\.io is listening on (http:\/\/127\.0\.0\.1:\d+)/, 'socket.io server', 30_000);
  }
  // Warm-up: the first lead also creates the contact (CONTACT_CREATED) before any client
  // listens; from here on each lead yields exactly one LEAD_CREATED.
  await post(url, key);
  proc.stdout.on('data', (d) => logStream.write(d));
  return {
    kind,
    proc,
    logFile,
    pid: proc.pid,
    url,
    key,
    stderrTail: () => stderr.join('').split('\n').slice(-20).join('\n'),
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        const t0 = Date.now();
        while (proc.exitCode === null && proc.signalCode === null && Date.now() - t0 < 5000) await sleep(100);
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      }
      await new Promise((r) => logStream.end(r));
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Warnings and errors in a server's log, counted by message (timestamps and ids stripped).
function summarizeLog(file) {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  const counts = {};
  for (const line of text.split('\n')) {
    if (!/WARN|ERROR|panick/i.test(line)) continue;
    const key = line
      .replace(/\x1b\[[0-9;]*m/g, '')
      .replace(/^\S*\d{4}-\d\d-\d\dT\S+\s*/, '')
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f-]{27,}/g, 'ID')
      .trim()
      .slice(0, 200);
    counts[key] = (counts[key] || 0) + 1;
  }
  return counts;
}

// --- Clients and writer ---------------------------------------------------------------
async function startClients(server, n) {
  const procs = Math.max(1, Math.min(S.clientProcs, n));
  const clients = [];
  for (let i = 0; i < procs; i++) {
    clients.push(track(fork(path.join(HERE, 'client.js'), [], { execArgv: S.clientNodeArgs, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })));
  }
  const wsUrl = server.kind === 'flow' ? server.url.replace('http://', 'ws://') + '/events' : server.url;
  const share = (i) => Math.floor(n / procs) + (i < n % procs ? 1 : 0);
  const t0 = hrNs();
  const answers = await Promise.all(
    clients.map((c, i) =>
      call(c, { cmd: 'connect', kind: server.kind, url: wsUrl, key: server.key, count: share(i), concurrency: S.connectConcurrency, handshakeTimeoutMs: 20_000, connectDeadlineMs: 180_000 }, 240_000),
    ),
  );
  const errors = {};
  for (const a of answers) for (const [k, v] of Object.entries(a.errors)) errors[k] = (errors[k] || 0) + v;
  const connected = answers.reduce((s, a) => s + a.ok, 0);
  return {
    clients,
    open: connected,
    closedSoFar: 0,
    connected,
    failed: answers.reduce((s, a) => s + a.failed, 0),
    notTried: answers.reduce((s, a) => s + a.notTried, 0),
    errors,
    connectS: (hrNs() - t0) / 1e9,
  };
}

async function stopClients(clients) {
  await Promise.all(clients.map((c) => call(c, { cmd: 'close' }, 30_000).catch(() => c.kill('SIGKILL'))));
  await sleep(500);
}

function cpuSnapshot(pids) {
  return { ticks: pids.map((group) => group.map(procTicks).reduce((s, t) => s + (t || 0), 0)), machine: machineTicks() };
}
// % of one core for each pid group and for everything else, between two snapshots; and
// the machine's interrupt/softirq time (mostly loopback networking), which on this kernel
// largely overlaps the processes' own system time, so it is shown apart, not added.
function cpuPercent(a, b) {
  const core = (b.machine.total - a.machine.total) / os.cpus().length;
  if (core <= 0) return null;
  const groups = b.ticks.map((t, i) => (100 * (t - a.ticks[i])) / core);
  const busy = (100 * (b.machine.busy - a.machine.busy)) / core;
  const irq = (100 * (b.machine.irq - a.machine.irq)) / core;
  // CPU seconds of each group (Linux reports ticks at USER_HZ = 100).
  const seconds = b.ticks.map((t, i) => (t - a.ticks[i]) / 100);
  return { groups, seconds, irq, busy, else: Math.max(0, busy - groups.reduce((s, x) => s + x, 0)) };
}

// Flow's own histogram of event delivery (commit → frame written to the socket), from
// /metrics: cumulative bucket counts by upper bound in seconds. Null for other servers.
async function deliveryBuckets(server) {
  if (server.kind !== 'flow') return null;
  try {
    const r = await fetch(new URL('/metrics', server.url), { signal: AbortSignal.timeout(10_000) });
    const text = await r.text();
    const out = {};
    for (const m of text.matchAll(/^websocket_event_delivery_seconds_bucket\{le="([^"]+)"\} (\d+)/gm)) out[m[1]] = Number(m[2]);
    return out;
  } catch {
    return null;
  }
}
// Server-side quantile from two cumulative snapshots: the bucket bound it falls in.
function serverSide(a, b) {
  if (!a || !b) return null;
  const les = Object.keys(b).sort((x, y) => (x === '+Inf' ? 1 : y === '+Inf' ? -1 : Number(x) - Number(y)));
  const cum = les.map((le) => [le, b[le] - (a[le] || 0)]);
  const n = cum.length ? cum[cum.length - 1][1] : 0;
  if (!n) return { n: 0 };
  const q = (p) => {
    const rank = Math.ceil(p * n);
    const hit = cum.find(([, c]) => c >= rank);
    const i = cum.indexOf(hit);
    const lo = i > 0 ? Number(cum[i - 1][0]) * 1000 : 0;
    return hit[0] === '+Inf' ? `> ${lo} ms` : `${lo}–${Number(hit[0]) * 1000} ms`;
  };
  const within = (le) => {
    const hit = cum.find(([x]) => x === le);
    return hit ? hit[1] / n : null;
  };
  return { n, p50: q(0.5), p99: q(0.99), within50ms: within('0.05') };
}

// One timed phase: the writer sends `rate` leads/s for `durationS`, then we wait until every
// connected client got every event (or DRAIN seconds passed) and merge the clients' reports.
async function phase(server, conn, writer, phaseId, rate, durationS, isWarmup = false) {
  const la = loadavg();
  const pids = [[server.pid], conn.clients.map((c) => c.pid), [writer.pid]];
  const m0 = await deliveryBuckets(server);
  const cpu0 = cpuSnapshot(pids);
  const openAtStart = conn.open;
  const w = await call(writer, { cmd: 'run', url: server.url, key: server.key, rate, durationS, phase: phaseId }, (durationS + 40) * 1000);
  // Until the reports are in, expect what got a 2xx; a lead whose request failed at the
  // writer may still have been broadcast, which the reports show.
  let expected = w.ok * openAtStart;
  const drainUntil = Date.now() + S.drainS * 1000;
  // Done when every sent lead reached every socket, or when everything answered 2xx did and
  // nothing more arrived for 1 s; at most DRAIN seconds.
  let delivered = 0;
  let lastChange = Date.now();
  while (Date.now() < drainUntil) {
    const counts = await Promise.all(conn.clients.map((c) => call(c, { cmd: 'count', phase: phaseId }, 10_000)));
    const now = counts.reduce((s, x) => s + x.n, 0);
    if (now !== delivered) lastChange = Date.now();
    delivered = now;
    if (delivered >= w.sent * openAtStart) break;
    if (delivered >= expected && Date.now() - lastChange >= 1000) break;
    await sleep(200);
  }
  const cpu1 = cpuSnapshot(pids);
  const m1 = await deliveryBuckets(server);
  const reports = await Promise.all(conn.clients.map((c) => call(c, { cmd: 'report', phase: phaseId }, 30_000)));
  const hist = new Histogram();
  let lastNs = 0;
  let open = 0;
  let closedTotal = 0;
  const closeCodes = {};
  let untimed = 0;
  const seen = new Uint8Array(Math.max(w.sent, 1));
  for (const r of reports) {
    r.seen.forEach((x, i) => {
      if (x && i < seen.length) seen[i] = 1;
    });
    hist.merge(r.hist);
    if (r.lastNs > lastNs) lastNs = r.lastNs;
    open += r.open;
    closedTotal += r.closedAfterOpen;
    untimed += r.untimed;
    for (const [k, v] of Object.entries(r.closeCodes)) closeCodes[k] = (closeCodes[k] || 0) + v;
  }
  // Clients report closes since they connected: this phase's are the new ones.
  const closed = closedTotal - conn.closedSoFar;
  conn.closedSoFar = closedTotal;
  conn.open = open;
  const events = Math.max(w.ok, seen.reduce((a, b) => a + b, 0));
  expected = events * openAtStart;
  const post = new Histogram();
  post.merge(w.post);
  const windowS = lastNs && w.firstNs ? (lastNs - w.firstNs) / 1e9 : null;
  const cpu = cpuPercent(cpu0, cpu1);
  const res = {
    phase: phaseId,
    rate,
    durationS,
    loadavg: la,
    writer: {
      planned: w.planned,
      sent: w.sent,
      skipped: w.skipped,
      ok: w.ok,
      statuses: w.statuses,
      errors: w.errors,
      unanswered: w.unanswered,
      achievedRate: w.achievedRate,
      postP50Ms: post.quantileUs(0.5) / 1000,
      postP99Ms: post.quantileUs(0.99) / 1000,
      maxLagMs: w.lag.maxUs / 1000,
    },
    events,
    clientsAtStart: openAtStart,
    clientsOpenAtEnd: open,
    closedDuringRun: closed,
    closeCodes,
    untimed,
    expected,
    delivered: hist.n,
    lost: Math.max(0, expected - hist.n),
    extra: Math.max(0, hist.n - expected),
    windowS,
    deliveredPerS: windowS ? hist.n / windowS : null,
    p50Ms: hist.quantileUs(0.5) / 1000,
    p99Ms: hist.quantileUs(0.99) / 1000,
    maxMs: hist.maxUs / 1000,
    serverSide: serverSide(m0, m1),
    cpu: cpu && { server: cpu.groups[0], clients: cpu.groups[1], writer: cpu.groups[2], else: cpu.else, busy: cpu.busy, irq: cpu.irq },
    // CPU time per delivered message, in µs: what one message costs the server / the clients.
    usPerMsg: cpu && hist.n ? { server: (cpu.seconds[0] * 1e6) / hist.n, clients: (cpu.seconds[1] * 1e6) / hist.n } : null,
  };
  // Keeps up: every lead answered 2xx at (nearly) the planned rate, every message delivered,
  // no socket closed, and delivery kept pace (no backlog growing over the step).
  res.offeredPerS = (events * openAtStart) / durationS;
  res.keepsUp =
    w.ok === w.planned &&
    w.sent === w.planned &&
    res.writer.achievedRate >= 0.95 * rate &&
    res.lost === 0 &&
    closed === 0 &&
    res.deliveredPerS !== null &&
    res.deliveredPerS >= 0.95 * res.offeredPerS;
  // Sustainable: keeps up, and p99 under the target.
  res.pass = res.keepsUp && res.p99Ms !== null && res.p99Ms < S.p99TargetMs;
  const f = (x) => (x === null ? 'n/a' : x.toFixed(2));
  log(
    `${NAMES[server.kind]} N=${openAtStart} ${rate} ev/s${isWarmup ? ' (warm-up, not recorded)' : ''}: ${hist.n}/${expected} delivered (${Math.round(res.deliveredPerS || 0)}/s), ` +
      `p50 ${f(res.p50Ms)} ms p99 ${f(res.p99Ms)} ms max ${f(res.maxMs)} ms; writer ${w.ok}/${w.planned} 2xx at ${w.achievedRate.toFixed(1)}/s; ` +
      `CPU server ${cpu ? cpu.groups[0].toFixed(0) : '?'}% clients ${cpu ? cpu.groups[1].toFixed(0) : '?'}% irq ${cpu ? cpu.irq.toFixed(0) : '?'}% else ${cpu ? cpu.else.toFixed(0) : '?'}%; ${res.pass ? 'pass' : res.keepsUp ? 'keeps up, p99 too high' : 'FAIL'}`,
  );
  return res;
}

// A phase, repeated (at most BUSY_RETRIES times, after waiting for quiet) when other work
// used more than BUSY_ELSE_PCT % of a core during it. The discarded attempts are recorded.
let nextPhaseId = 1;
async function measuredPhase(server, conn, writer, rate, durationS) {
  const discarded = [];
  for (let attempt = 1; ; attempt++) {
    const r = await phase(server, conn, writer, nextPhaseId++, rate, durationS);
    r.attempt = attempt;
    r.discarded = discarded;
    const busy = r.cpu && r.cpu.else > S.busyElsePct;
    if (!busy || attempt > S.busyRetries || r.closedDuringRun > 0) return r;
    discarded.push({ else: r.cpu.else, loadavg: r.loadavg, p99Ms: r.p99Ms, deliveredPerS: r.deliveredPerS, pass: r.pass });
    log(`other work used ${r.cpu.else.toFixed(0)}% of a core during this step: waiting for quiet, then repeating it`);
    await waitQuiet();
  }
}

// WARMUP seconds at `rate`, not recorded (JIT warm-up for Node, caches for both).
async function warmup(server, conn, writer, rate) {
  if (!(S.warmupS > 0)) return;
  const r = await phase(server, conn, writer, nextPhaseId++, rate, S.warmupS, true);
  if (r.closedDuringRun) log(`warning: ${r.closedDuringRun} sockets closed during the warm-up`);
  await sleep(1000);
}

// --- Scenarios ------------------------------------------------------------------------
// Waits for a quiet machine (bounded); returns what the machine used, in % of one core,
// over the last 2 s sample and how long it waited.
async function waitQuiet() {
  const t0 = Date.now();
  const deadline = t0 + S.quietWaitS * 1000;
  let busy = 0;
  let noted = false;
  let quietSamples = 0;
  for (;;) {
    const a = machineTicks();
    await sleep(2000);
    const b = machineTicks();
    busy = (100 * (b.busy - a.busy)) / ((b.total - a.total) / os.cpus().length);
    quietSamples = busy <= S.quietPct ? quietSamples + 1 : 0;
    // Quiet for QUIET_SAMPLES samples in a row (compiles come in bursts, crate by crate).
    if (quietSamples >= S.quietSamples || Date.now() >= deadline) break;
    if (!noted && quietSamples === 0) {
      log(`machine busy (${busy.toFixed(0)}% of a core, load average ${loadavg()}): waiting up to ${S.quietWaitS} s for it to calm down`);
      noted = true;
    }
  }
  return { busyPct: busy, waitedS: (Date.now() - t0) / 1000 };
}

// N idle connections (memory), then RATE ev/s for DURATION (latency, delivery).
async function scenarioSize(kind, n) {
  const quiet = await waitQuiet();
  const out = { kind, n, loadavg: loadavg(), quiet };
  log(`${NAMES[kind]}: fresh server for N=${n} (load average ${out.loadavg})`);
  const server = await startServer(kind);
  let conn = null;
  const writer = track(fork(path.join(HERE, 'writer.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  try {
    await sleep(1000);
    out.rssBeforeKiB = rssKiB(server.pid);
    out.threadsBefore = threads(server.pid);
    out.anonBeforeKiB = rssKiB(server.pid, 'RssAnon');
    const t0 = procTicks(server.pid);
    conn = await startClients(server, n);
    out.connectCpuS = ((procTicks(server.pid) || 0) - (t0 || 0)) / 100;
    Object.assign(out, { connected: conn.connected, failed: conn.failed, notTried: conn.notTried, errors: conn.errors, connectS: conn.connectS });
    log(`${NAMES[kind]}: ${conn.connected}/${n} connected in ${conn.connectS.toFixed(1)} s` + (conn.failed ? `; ${conn.failed} failed: ${JSON.stringify(conn.errors)}` : ''));
    await sleep(S.settleS * 1000);
    out.rssIdleKiB = rssKiB(server.pid);
    out.threadsIdle = threads(server.pid);
    out.anonIdleKiB = rssKiB(server.pid, 'RssAnon');
    log(`${NAMES[kind]}: RSS ${out.rssBeforeKiB} → ${out.rssIdleKiB} KiB (anonymous ${out.anonBeforeKiB} → ${out.anonIdleKiB} KiB), threads ${out.threadsBefore} → ${out.threadsIdle}`);
    out.perConnKiB = conn.connected ? (out.rssIdleKiB - out.rssBeforeKiB) / conn.connected : null;
    if (conn.connected > 0) {
      await warmup(server, conn, writer, S.rate);
      out.run = await measuredPhase(server, conn, writer, S.rate, S.durationS);
    }
    out.rssAfterKiB = rssKiB(server.pid);
    out.serverAlive = server.proc.exitCode === null && server.proc.signalCode === null;
  } catch (e) {
    out.error = e.message;
    log(`${NAMES[kind]} N=${n}: ${e.message}`);
  } finally {
    if (conn) await stopClients(conn.clients);
    writer.kill('SIGTERM');
    if (server.proc.exitCode !== null || server.proc.signalCode !== null) out.serverDied = `${server.proc.exitCode ?? server.proc.signalCode}: ${server.stderrTail()}`;
    await server.stop();
    out.serverLog = summarizeLog(server.logFile);
  }
  return out;
}

// N=SWEEP_N connections; the event rate steps up until a step fails.
async function scenarioSweep(kind) {
  const quiet = await waitQuiet();
  const out = { kind, n: S.sweepN, loadavg: loadavg(), quiet, steps: [] };
  log(`${NAMES[kind]}: fresh server for the rate sweep, N=${S.sweepN} (load average ${out.loadavg})`);
  const server = await startServer(kind);
  let conn = null;
  const writer = track(fork(path.join(HERE, 'writer.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  try {
    conn = await startClients(server, S.sweepN);
    Object.assign(out, { connected: conn.connected, failed: conn.failed, errors: conn.errors });
    if (conn.connected === 0) throw new Error(`no client connected: ${JSON.stringify(conn.errors)}`);
    await sleep(S.settleS * 1000);
    await warmup(server, conn, writer, S.sweepRates[0]);
    // Past the first step over the p99 target the sweep goes on while the server keeps up,
    // to find the delivery plateau; it stops at the first step that does not keep up.
    for (const rate of S.sweepRates) {
      const step = await measuredPhase(server, conn, writer, rate, S.sweepDurationS);
      out.steps.push(step);
      if (!step.keepsUp) break;
      await sleep(2000);
    }
  } catch (e) {
    out.error = e.message;
    log(`${NAMES[kind]} sweep: ${e.message}`);
  } finally {
    if (conn) await stopClients(conn.clients);
    writer.kill('SIGTERM');
    if (server.proc.exitCode !== null || server.proc.signalCode !== null) out.serverDied = `${server.proc.exitCode ?? server.proc.signalCode}: ${server.stderrTail()}`;
    await server.stop();
    out.serverLog = summarizeLog(server.logFile);
  }
  // The highest step below the first one that failed the criterion.
  const highest = (ok) => {
    const firstFail = out.steps.findIndex((s) => !ok(s));
    const good = firstFail < 0 ? out.steps : out.steps.slice(0, firstFail);
    return good.length ? good[good.length - 1] : null;
  };
  out.highestPassing = highest((s) => s.pass);
  out.highestKeepingUp = highest((s) => s.keepsUp);
  out.plateauPerS = Math.max(0, ...out.steps.map((s) => s.deliveredPerS || 0));
  return out;
}

// --- Report ---------------------------------------------------------------------------
const num = (x, d = 0) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));
const ms = (x) => (x === null || x === undefined ? 'n/a' : `${x.toFixed(x < 10 ? 2 : 1)} ms`);
const us = (x) => (x === null || x === undefined ? 'n/a' : `${x.toFixed(1)} µs`);
const pct = (x) => (x === null || x === undefined ? 'n/a' : `${x.toFixed(0)}%`);
const mib = (kib) => (kib === null || kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(1)} MiB`);
const yes = (b) => (b ? 'yes' : '**no**');
const quietText = (q) => (q ? `${q.busyPct.toFixed(0)}%${q.waitedS > 2 * S.quietSamples + 1 ? ` (waited ${q.waitedS.toFixed(0)} s)` : ''}` : 'n/a');
const errText = (errors) => Object.entries(errors || {}).map(([k, v]) => `${v}× ${k}`).join('; ');

function writerNote(r) {
  const w = r.writer;
  const bad = [];
  if (w.skipped) bad.push(`${w.skipped} not sent`);
  for (const [s, c] of Object.entries(w.statuses)) if (!s.startsWith('2')) bad.push(`${c}× HTTP ${s}`);
  for (const [e, c] of Object.entries(w.errors)) bad.push(`${c}× ${e}`);
  if (w.unanswered) bad.push(`${w.unanswered} unanswered`);
  return bad.join(', ');
}

function runRow(name, n, r) {
  const closes = r.closedDuringRun ? ` (${r.closedDuringRun} closed: ${JSON.stringify(r.closeCodes)})` : '';
  const wnote = writerNote(r);
  const retried = r.discarded && r.discarded.length ? ` (attempt ${r.attempt}; discarded: ${r.discarded.map((d) => `else ${d.else.toFixed(0)}%`).join(', ')})` : '';
  return `| ${name} | ${num(n)} | ${r.rate} ev/s, ${r.durationS} s | ${num(r.writer.ok)}/${num(r.writer.planned)}${wnote ? ` (${wnote})` : ''}${r.events > r.writer.ok ? `; ${num(r.events)} broadcast` : ''} | ${num(r.expected)} | ${num(r.delivered)} | ${num(r.lost)}${closes} | ${num(r.deliveredPerS)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${ms(r.maxMs)} | ${ms(r.writer.postP50Ms)} / ${ms(r.writer.postP99Ms)} | ${r.serverSide && r.serverSide.n ? `${r.serverSide.p50} / ${r.serverSide.p99}` : 'n/a'} | ${us(r.usPerMsg?.server)} | ${us(r.usPerMsg?.clients)} | ${pct(r.cpu?.server)} | ${pct(r.cpu?.clients)} | ${pct(r.cpu?.writer)} | ${pct(r.cpu?.else)}${retried} | ${pct(r.cpu?.busy)} | ${pct(r.cpu?.irq)} | ${r.loadavg} |`;
}

function section(meta, sizes, sweeps) {
  const L = [];
  const names = S.servers.map((k) => NAMES[k]).join(' vs ');
  L.push(`## ${meta.date} · ${meta.commit} · fan-out`, '');
  L.push('| | |', '|---|---|');
  L.push(`| Section type | fan-out: WebSocket fan-out, ${names}, same run (\`bench/fanout\`, see its README.md) |`);
  L.push(`| Machine | ${meta.machine} |`);
  L.push(`| Commit | ${meta.commit} |`);
  L.push(`| Versions | Node ${process.version}; socket.io ${meta.versions.sio}, socket.io-client ${meta.versions.sioClient}, ws ${meta.versions.ws} |`);
  L.push(`| Flow binary | ${S.flowBinDesc} |`);
  L.push(
    `| Setup | a fresh server process per scenario (Flow: fresh data dir, one tenant, a key with a 100,000,000/min limit; socket.io: \`sio-server.js\`, one room); ` +
      `clients in ${S.clientProcs} processes (Flow: \`ws\`, header key, \`x-source-app: flow-web\`; socket.io: \`socket.io-client\`, websocket transport only); ` +
      `a writer process POSTing \`/leads\` at a fixed rate (open loop) with its \`process.hrtime.bigint()\` in \`notes\`; latency = client receive time − writer send time; ` +
      `an unrecorded ${S.warmupS} s warm-up at the first rate after connecting; all on 127.0.0.1; fd limit ${meta.ulimit} |`,
  );
  L.push(`| Run | \`${S.runCommand}\` |`);
  L.push('');
  L.push('Connections, server memory (VmRSS) before connecting and with all clients connected and idle for ' + `${S.settleS} s:`, '');
  L.push('| Server | N | connected | failed | connect time | RSS before | RSS idle | per idle connection | RSS after the run | server threads before / idle | load avg before | other CPU before |');
  L.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|');
  for (const s of sizes) {
    const failed = s.failed || s.notTried ? `${num((s.failed || 0) + (s.notTried || 0))}: ${errText(s.errors)}${s.notTried ? `; ${s.notTried} not tried (deadline)` : ''}` : '0';
    L.push(
      `| ${NAMES[s.kind]} | ${num(s.n)} | ${num(s.connected)} | ${failed}${s.error ? ` (error: ${s.error})` : ''} | ${s.connectS ? `${s.connectS.toFixed(1)} s` : 'n/a'} | ${mib(s.rssBeforeKiB)} | ${mib(s.rssIdleKiB)} | ${s.perConnKiB === null || s.perConnKiB === undefined ? 'n/a' : `${s.perConnKiB.toFixed(1)} KiB`} | ${mib(s.rssAfterKiB)} | ${s.threadsBefore ?? 'n/a'} / ${s.threadsIdle ?? 'n/a'} | ${s.loadavg} | ${quietText(s.quiet)} |`,
    );
  }
  L.push('');
  const header =
    '| Server | N | load | events (2xx) | expected msgs | delivered | lost | delivered/s | p50 | p99 | max | POST p50 / p99 | Flow commit→written p50 / p99 | server CPU per msg | clients CPU per msg | CPU server | CPU clients | CPU writer | CPU else | CPU machine | of which irq | load avg before |';
  const align = '|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|';
  L.push(`Delivery at ${S.rate} events/s to every connection:`, '', header, align);
  for (const s of sizes) if (s.run) L.push(runRow(NAMES[s.kind], s.run.clientsAtStart, s.run));
  L.push('');
  L.push(
    `Rate sweep, N=${num(S.sweepN)}: the event rate steps up (${S.sweepRates.join(', ')} ev/s, ${S.sweepDurationS} s each) until the server no longer keeps up. ` +
      'A step **keeps up** when every lead is answered 2xx at >= 95% of the planned rate, every message is delivered, no socket closes and ' +
      `delivered/s is >= 95% of the offered rate (events × connections / ${S.sweepDurationS} s); it **passes** (sustainable) when it also has p99 < ${S.p99TargetMs} ms:`,
    '',
    header.replace('| load avg before |', '| keeps up | pass | load avg before |'),
    align.replace(/\|---\|$/, '|---|---|---|'),
  );
  for (const sw of sweeps) {
    for (const st of sw.steps) {
      const row = runRow(NAMES[sw.kind], st.clientsAtStart, st);
      L.push(row.replace(/\| ([^|]*) \|$/, `| ${st.keepsUp ? 'yes' : '**no**'} | ${st.pass ? 'yes' : '**no**'} | $1 |`));
    }
    if (sw.error) L.push(`| ${NAMES[sw.kind]} | error: ${sw.error} |`);
  }
  L.push('');
  for (const sw of sweeps) {
    const step = (h) => (h ? `${h.rate} ev/s × ${num(h.clientsAtStart)} = ${num(h.rate * h.clientsAtStart)} msgs/s` : 'none');
    L.push(
      `- ${NAMES[sw.kind]}: sustainable (p99 < ${S.p99TargetMs} ms) up to ${step(sw.highestPassing)}; keeps up to ${step(sw.highestKeepingUp)}` +
        `; highest delivered rate of any step ${num(sw.plateauPerS)} msgs/s`,
    );
  }
  L.push('');

  // Targets
  const get = (kind, n) => sizes.find((s) => s.kind === kind && s.n === n);
  const sweep = (kind) => sweeps.find((s) => s.kind === kind);
  const f10k = get('flow', 10000);
  const s10k = get('socketio', 10000);
  const fIdle = sizes.filter((s) => s.kind === 'flow' && s.perConnKiB !== null && s.perConnKiB !== undefined);
  const fs_ = sweep('flow');
  const ss_ = sweep('socketio');
  const rateOf = (sw) => (sw && sw.highestPassing ? sw.highestPassing.rate * sw.highestPassing.clientsAtStart : 0);
  const keepOf = (sw) => (sw && sw.highestKeepingUp ? sw.highestKeepingUp.rate * sw.highestKeepingUp.clientsAtStart : 0);
  L.push('| Target | Flow | socket.io | Met (Flow) |', '|---|---|---|---|');
  if (f10k || s10k) {
    const held = (s) => (s ? `${num(s.connected)}/${num(s.n)} connected${s.run ? `, ${num(s.run.clientsOpenAtEnd)} open after the run` : ''}` : 'not run');
    const fHeld = f10k && f10k.connected === 10000 && f10k.run && f10k.run.clientsOpenAtEnd === 10000;
    L.push(`| 10,000 connections held | ${held(f10k)} | ${held(s10k)} | ${yes(fHeld)} |`);
    const p = (s) => (s && s.run ? `p99 ${ms(s.run.p99Ms)}, ${num(s.run.delivered)}/${num(s.run.expected)} delivered, ${num(s.run.deliveredPerS)} msgs/s` : 'n/a');
    const fP = f10k && f10k.run && f10k.run.pass;
    L.push(`| p99 < ${S.p99TargetMs} ms at ${S.rate} ev/s to 10,000 (${num(S.rate * 10000)} msgs/s), all delivered | ${p(f10k)} | ${p(s10k)} | ${yes(fP)} |`);
  }
  if (fs_ || ss_) {
    const d = (sw) => (sw ? `sustainable ${num(rateOf(sw))} msgs/s; keeps up to ${num(keepOf(sw))} msgs/s; plateau ${num(sw.plateauPerS)} msgs/s` : 'not run');
    L.push(`| highest sustainable delivery rate reported (N=${num(S.sweepN)}) | ${d(fs_)} | ${d(ss_)} | ${yes(fs_ && fs_.steps.length > 0)} |`);
  }
  if (fIdle.length) {
    const m = (kind) =>
      sizes
        .filter((s) => s.kind === kind && s.perConnKiB !== null && s.perConnKiB !== undefined)
        .map((s) => `${s.perConnKiB.toFixed(1)} KiB (N=${num(s.connected)})`)
        .join(', ') || 'n/a';
    // Between the smallest and the largest N: the marginal cost, free of fixed start-up growth.
    const slope = (kind) => {
      const xs = sizes.filter((s) => s.kind === kind && s.connected > 0 && s.rssIdleKiB).sort((a, b) => a.connected - b.connected);
      if (xs.length < 2) return '';
      const [a, b] = [xs[0], xs[xs.length - 1]];
      return `; marginal ${((b.rssIdleKiB - a.rssIdleKiB) / (b.connected - a.connected)).toFixed(1)} KiB (N=${num(a.connected)}→${num(b.connected)})`;
    };
    const largest = fIdle.sort((a, b) => b.connected - a.connected)[0];
    L.push(
      `| < 20 KiB server memory per idle connection (judged at the largest N) | ${m('flow')}${slope('flow')} | ${m('socketio')}${slope('socketio')} | ${yes(largest.perConnKiB < 20)} |`,
    );
  }
  if (fs_ && ss_) {
    const ratio = (a, b) => (b ? `${(a / b).toFixed(2)}x` : a ? 'socket.io 0' : 'n/a');
    const rk = keepOf(ss_) ? keepOf(fs_) / keepOf(ss_) : null;
    const rp = ss_.plateauPerS ? fs_.plateauPerS / ss_.plateauPerS : null;
    L.push(
      `| >= 3x socket.io's delivery rate (judged on the highest rate kept up with, and on the plateau) | sustainable ${ratio(rateOf(fs_), rateOf(ss_))}; keeps up ${ratio(keepOf(fs_), keepOf(ss_))}; plateau ${ratio(fs_.plateauPerS, ss_.plateauPerS)} | | ${yes(rk !== null && rk >= 3 && rp !== null && rp >= 3)} |`,
    );
  }
  L.push('');
  L.push(
    'Columns: **events (2xx)** leads the writer got 2xx for / leads planned (and how many were broadcast when a lead whose request failed at the writer still reached clients); ' +
      '**expected msgs** = broadcast leads × connections open at the start; ' +
      '**lost** = expected − delivered within the drain window (' +
      `${S.drainS} s after the last answer); **delivered/s** = messages delivered / (last delivery − first send); **p50/p99/max** delivery latency over all messages ` +
      '(10 µs buckets below 100 ms, 1 ms above); **POST** the writer\'s request latency; **Flow commit→written** Flow\'s own `websocket_event_delivery_seconds` histogram from `/metrics` (event timestamp to frame written to the socket), as the Prometheus bucket holding p50 / p99; **server / clients CPU per msg** CPU time (user + system) of the server / of all client processes during the step, divided by the messages delivered; **CPU** in % of one core (200% = both cores) during the step, ' +
      'by the server, the client processes, the writer and everything else ' +
      `("else" well above a few % means other work, such as a compile, competed; a step with else above ${S.busyElsePct}% is repeated up to ${S.busyRetries} times after waiting for a quiet machine); ` +
      '**CPU machine** all busy CPU; **of which irq** the machine\'s interrupt/softirq time (mostly loopback TCP), already inside the other columns.',
  );
  L.push(
    "Not like for like: Flow commits each lead and its event durably to SQLite before it broadcasts it (from its event log, with sequence numbers, resume and per-socket filtering); " +
      'the socket.io peer stores nothing and broadcasts straight from the HTTP handler. socket.io runs on one Node thread; Flow uses both cores. ' +
      'The clients share the 2 cores with the server: look at the CPU columns before reading a throughput limit as the server\'s.',
  );
  const warnings = [...sizes, ...sweeps].filter((x) => x.serverLog && Object.keys(x.serverLog).length);
  if (warnings.length) {
    L.push('');
    L.push('Server log warnings/errors (count × message):');
    for (const x of warnings) {
      const label = x.steps ? `${NAMES[x.kind]} sweep` : `${NAMES[x.kind]} N=${num(x.n)}`;
      const items = Object.entries(x.serverLog).sort((a, b) => b[1] - a[1]).slice(0, 5);
      L.push(`- ${label}: ${items.map(([k, v]) => `${v}× \`${k.replace(/`/g, "'")}\``).join('; ')}`);
    }
  }
  L.push('');
  return L.join('\n');
}

// --- Main -----------------------------------------------------------------------------
async function main() {
  if (S.servers.includes('flow') && !S.flowBin) throw new Error('FLOW_BIN is not set (run ./bench/fanout/run.sh)');
  fs.mkdirSync(S.outDir, { recursive: true });
  const meta = {
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    machine: `${os.cpus().length} cores, ${(os.cpus()[0]?.model || 'unknown CPU').trim()}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM`,
    commit: env('COMMIT', 'unknown'),
    ulimit: env('ULIMIT_N', 'unknown'),
    versions: {
      sio: require('socket.io/package.json').version,
      sioClient: require('socket.io-client/package.json').version,
      ws: require('ws/package.json').version,
    },
  };
  log(`servers ${S.servers.join(', ')}; sizes ${S.sizes.join(', ')}; sweep N=${S.sweepN} rates ${S.sweepRates.join(', ')}`);
  const sizes = [];
  const sweeps = [];
  // Servers alternate within each scenario, so background load hits both alike.
  for (const n of S.sizes) for (const kind of S.servers) sizes.push(await scenarioSize(kind, n));
  if (S.sweepN > 0 && S.sweepRates.length) for (const kind of S.servers) sweeps.push(await scenarioSweep(kind));
  const text = section(meta, sizes, sweeps);
  fs.writeFileSync(path.join(S.outDir, `${RUN_STAMP}-results.json`), JSON.stringify({ meta, settings: S, sizes, sweeps }, null, 2));
  process.stdout.write(text + '\n');
  if (S.results !== '-') {
    fs.appendFileSync(S.results, '\n' + text);
    log(`appended results to ${S.results}`);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    log(`error: ${e.stack || e.message}`);
    process.exit(1);
  },
);
