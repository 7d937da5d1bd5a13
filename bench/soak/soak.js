'use strict';
// The soak's orchestrator: seeds the tenants, runs the quiet phase and the abusive phase,
// samples the Flow process, and writes the report. run.sh starts Flow, creates the tenants
// and keys, and then runs this with the settings in its environment (see README.md).

const fs = require('fs');
const os = require('os');
const path = require('path');
const { fork } = require('child_process');
const lib = require('./lib');

const HERE = __dirname;
const env = process.env;
const num = (name, dflt) => (env[name] === undefined || env[name] === '' ? dflt : Number(env[name]));

const cfg = {
  url: env.SOAK_URL,
  pid: Number(env.SERVER_PID),
  serverLog: env.SERVER_LOG,
  dataDir: env.SOAK_DATA,
  keys: JSON.parse(fs.readFileSync(env.KEYS_FILE, 'utf8')),
  soakSecs: num('SOAK_SECS', 600),
  quietSecs: num('QUIET_SECS', 120),
  rampSecs: num('RAMP_SECS', 20),
  recoverSecs: num('RECOVER_SECS', 20),
  rate: num('RATE', 20),
  seedLeads: num('SEED_LEADS', 200),
  timeoutMs: num('CLIENT_TIMEOUT_MS', 10_000),
  spread: env.SPREAD_ADDRS !== '0',
  classes: (env.ABUSE || 'conns,flood,import,voice,search,hammer').split(',').map((s) => s.trim()).filter(Boolean),
  // Flow's limits the expectations are checked against: its defaults, which run.sh does
  // not change (config.default.toml).
  headerTimeoutMs: 15_000,
  maxPerAddress: 1000,
  wsPerKey: 500,
  wsPerTenant: 2000,
  voicePerKey: 10,
  voicePerTenant: 50,
  voiceBudgetMiB: 256,
  memSlackMiB: num('MEM_SLACK_MIB', 256),
  abuseNice: num('ABUSE_NICE', 10),
  // The abusers (README.md has what each does).
  idleConns: num('IDLE_CONNS', 2400),
  idleAddrs: num('IDLE_ADDRS', 2),
  slowlorisConns: num('SLOWLORIS_CONNS', 200),
  slowlorisGapMs: num('SLOWLORIS_GAP_MS', 2000),
  floodRate: num('FLOOD_RATE', 20),
  importRows: num('IMPORT_ROWS', 5000),
  importLoops: num('IMPORT_LOOPS', 1),
  importPauseMs: num('IMPORT_PAUSE_MS', 0),
  voiceSessionsPerKey: num('VOICE_SESSIONS_PER_KEY', 12),
  voiceKibps: num('VOICE_KIBPS', 256),
  searchRate: num('SEARCH_RATE', 5),
  searchChars: num('SEARCH_CHARS', 30_000),
  hammerRate: num('HAMMER_RATE', 200),
  hammerLimit: num('HAMMER_LIMIT', 60),
  results: env.RESULTS,
  runCommand: env.RUN_COMMAND,
  commit: env.COMMIT,
  flowBinDesc: env.FLOW_BIN_DESC,
  outDir: env.OUT_DIR,
};
cfg.voiceKeys = cfg.keys.abuse.voice.length;
cfg.wsUrl = cfg.url.replace(/^http/, 'ws');
cfg.port = Number(new URL(cfg.url).port);

// Source addresses: every simulated client has its own loopback address (all of 127/8 is
// the loopback interface), so Flow's per-address connection cap applies per client, as it
// would to separate machines. With SPREAD_ADDRS=0 everything comes from 127.0.0.1, and the
// idle connections crowd the well-behaved clients out of that address's cap, by design.
const addr = (n) => (cfg.spread ? `127.0.0.${n}` : '127.0.0.1');
const TENANT_ADDR = { A: addr(2), B: addr(3), C: addr(4) };

const log = (...a) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}]`, ...a);

// --- child processes -------------------------------------------------------------------

// Forks `file`, sends it its config and resolves to its result (null if it gave none in
// time: it is then killed).
function runChild(file, config, timeoutMs) {
  const child = fork(path.join(HERE, file), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const done = new Promise((resolve) => {
    const timer = setTimeout(() => {
      log(`${file} ${config.cls || config.label}: no result within ${Math.round(timeoutMs / 1000)} s; killing it`);
      child.kill('SIGKILL');
      resolve(null);
    }, timeoutMs);
    child.on('message', (m) => {
      if (m.type === 'result') {
        clearTimeout(timer);
        resolve(m.result);
      }
    });
    child.on('exit', () => {
      clearTimeout(timer);
      resolve(null);
    });
  });
  child.send({ type: 'start', config });
  return { child, done };
}

// --- sampling the server -----------------------------------------------------------------

class Sampler {
  constructor(pid) {
    this.pid = pid;
    this.samples = [];
    this.timer = null;
  }

  start() {
    this.samples = [];
    this.t0 = Date.now();
    this.ticks0 = lib.procTicks(this.pid);
    this.machine0 = lib.machineTicks();
    this.self0 = process.cpuUsage();
    this.io0 = lib.procIo(this.pid);
    this.states = {};
    this.take();
    this.timer = setInterval(() => this.take(), 1000);
    // Thread states more often than the rest: a worker thread stuck in an fsync or a long
    // statement for a fraction of a second is what stalls every request it would serve.
    this.stateTimer = setInterval(() => {
      for (const st of lib.threadStates(this.pid)) lib.bump(this.states, st);
    }, 200);
  }

  take() {
    this.samples.push({
      t: (Date.now() - this.t0) / 1000,
      fds: lib.fdCount(this.pid),
      rssKiB: lib.statusField(this.pid, 'VmRSS'),
      threads: lib.statusField(this.pid, 'Threads'),
    });
  }

  // Maxima and CPU (in ticks) over the sampled window.
  stop() {
    clearInterval(this.timer);
    clearInterval(this.stateTimer);
    const io1 = lib.procIo(this.pid);
    this.take();
    const max = (k) => Math.max(...this.samples.map((s) => s[k] ?? 0));
    const m1 = lib.machineTicks();
    const self = process.cpuUsage(this.self0);
    return {
      seconds: (Date.now() - this.t0) / 1000,
      maxFds: max('fds'),
      maxRssKiB: max('rssKiB'),
      maxThreads: max('threads'),
      last: this.samples[this.samples.length - 1],
      samples: this.samples,
      flowTicks: (lib.procTicks(this.pid) ?? 0) - (this.ticks0 ?? 0),
      machineBusy: m1.busy - this.machine0.busy,
      machineTotal: m1.total - this.machine0.total,
      selfUs: self.user + self.system,
      alive: lib.procTicks(this.pid) !== null,
      threadStates: this.states,
      ioWriteBytes: io1 && this.io0 ? io1.write - this.io0.write : null,
    };
  }
}

// Warnings and errors Flow logged (JSON lines) since `offset`: counts by message.
function serverLog(offset) {
  let text = '';
  try {
    const fd = fs.openSync(cfg.serverLog, 'r');
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - offset));
    fs.readSync(fd, buf, 0, buf.length, offset);
    fs.closeSync(fd);
    text = buf.toString('utf8');
    offset = size;
  } catch {
    return { offset, counts: {} };
  }
  const counts = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      // Flow's JSON lines carry the event's fields at the top level (tracing-subscriber
      // flattened); older formats nest them under "fields".
      const j = JSON.parse(line);
      const f = { ...j.fields, ...j };
      const detail = f.error ?? f.classification;
      lib.bump(counts, `${f.level} "${f.message ?? ''}"${detail ? ` (${String(detail).slice(0, 80)})` : ''}`);
    } catch {
      lib.bump(counts, 'unparsed line');
    }
  }
  return { offset, counts };
}

// The counters of Flow's /metrics the report uses: sockets dropped as slow consumers
// (their writer could not keep up) and 5xx answers to anyone, by route and status.
async function metrics() {
  const r = await lib.request({ url: cfg.url, path: '/metrics', timeoutMs: 10_000, maxBody: 64 << 20 });
  const out = { slowConsumers: 0, fivexx: {} };
  if (r.status !== 200) return out;
  for (const line of r.body.split('\n')) {
    if (line.startsWith('websocket_slow_consumers_dropped_total ')) out.slowConsumers = Number(line.split(' ')[1]);
    const m = /^http_requests_total\{(.*)\} (\d+)/.exec(line);
    if (m && /status_code="5/.test(m[1])) {
      const route = /route="([^"]*)"/.exec(m[1]);
      const status = /status_code="(\d+)"/.exec(m[1]);
      lib.bump(out.fivexx, `${status ? status[1] : '5xx'} ${route ? route[1] : '?'}`, Number(m[2]));
    }
  }
  return out;
}

function metricsDelta(a, b) {
  const fivexx = {};
  for (const [k, n] of Object.entries(b.fivexx)) if (n - (a.fivexx[k] || 0) > 0) fivexx[k] = n - (a.fivexx[k] || 0);
  return { slowConsumers: b.slowConsumers - a.slowConsumers, fivexx };
}

function logOffset() {
  try {
    return fs.statSync(cfg.serverLog).size;
  } catch {
    return 0;
  }
}

// --- phases -------------------------------------------------------------------------------

function tenantConfigs(phase, durationSecs) {
  return ['A', 'B', 'C'].map((label) => ({
    label,
    phase,
    url: cfg.url,
    wsUrl: cfg.wsUrl,
    key: cfg.keys.tenants[label].key,
    app: 'crm-web',
    rate: cfg.rate,
    durationMs: durationSecs * 1000,
    timeoutMs: cfg.timeoutMs,
    maxInFlight: 400,
    localAddress: TENANT_ADDR[label],
  }));
}

async function runTenants(phase, durationSecs) {
  const runs = tenantConfigs(phase, durationSecs).map((c) => runChild('tenant.js', c, durationSecs * 1000 + 60_000));
  return Promise.all(runs.map((r) => r.done));
}

function abuserConfig(cls, durationMs) {
  const k = cfg.keys.abuse;
  const base = { cls, url: cfg.url, wsUrl: cfg.wsUrl, port: cfg.port, durationMs };
  switch (cls) {
    case 'conns':
      return {
        ...base,
        headerTimeoutMs: cfg.headerTimeoutMs,
        idleConns: cfg.idleConns,
        idleAddresses: Array.from({ length: Math.min(cfg.idleAddrs, 20) }, (_, i) => addr(20 + i)),
        slowlorisConns: cfg.slowlorisConns,
        slowlorisAddress: addr(19),
        slowlorisGapMs: cfg.slowlorisGapMs,
      };
    case 'flood':
      return { ...base, keys: k.flood, addresses: k.flood.map((_, i) => addr(100 + i)), rate: cfg.floodRate };
    case 'import':
      return {
        ...base, key: k.import, address: addr(50), rows: cfg.importRows, loops: cfg.importLoops,
        // One import at a time: wait for each to finish, however long it takes.
        pollMs: 1000, jobTimeoutMs: durationMs, pauseMs: cfg.importPauseMs,
      };
    case 'voice': {
      const chunkBytes = 64 * 1024;
      return {
        ...base, keys: k.voice, address: addr(51), sessionsPerKey: cfg.voiceSessionsPerKey,
        chunkBytes, chunkEveryMs: Math.max(10, Math.round((chunkBytes / (cfg.voiceKibps * 1024)) * 1000)),
        retryMs: 5000, restartMs: 1000,
      };
    }
    case 'search':
      return { ...base, key: k.search, address: addr(52), rate: cfg.searchRate, chars: cfg.searchChars };
    case 'hammer':
      return { ...base, key: k.hammer, address: addr(53), rate: cfg.hammerRate };
    default:
      throw new Error(`unknown abuse class ${cls}`);
  }
}

async function seed() {
  const agent = lib.keepAliveAgent(8);
  for (const label of ['A', 'B', 'C']) {
    const key = cfg.keys.tenants[label].key;
    let ok = 0;
    for (let i = 0; i < cfg.seedLeads; i += 8) {
      const batch = [];
      for (let j = i; j < Math.min(cfg.seedLeads, i + 8); j++) {
        batch.push(lib.request({
          url: cfg.url, method: 'POST', path: '/leads', agent,
          headers: { 'x-tenant-key': key, 'content-type': 'application/json' },
          body: JSON.stringify({ firstName: 'Seed', lastName: `Tenant${label}`, email: `seed-${label.toLowerCase()}-${j}@soak.test`, source: 'website' }),
        }));
      }
      for (const r of await Promise.all(batch)) if (r.status === 201) ok++;
    }
    if (ok !== cfg.seedLeads) throw new Error(`seeding tenant ${label}: ${ok}/${cfg.seedLeads} leads created`);
  }
  agent.destroy();
}

function dirBytes(dir) {
  let total = 0;
  try {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      total += e.isDirectory() ? dirBytes(p) : fs.statSync(p).size;
    }
  } catch {
    // gone or unreadable: counted as empty
  }
  return total;
}

// --- main ---------------------------------------------------------------------------------

async function main() {
  const sampler = new Sampler(cfg.pid);
  const limits = lib.fdLimit(cfg.pid);
  log(`flow pid ${cfg.pid}, open-file limit ${limits ? `${limits.soft} (hard ${limits.hard})` : 'unknown'}`);

  log(`seeding ${cfg.seedLeads} leads per tenant`);
  await seed();

  // Quiet: the well-behaved workload alone.
  log(`quiet phase: ${cfg.quietSecs} s, ${cfg.rate} req/s of each operation per tenant`);
  let offset = logOffset();
  const m0 = await metrics();
  const quietLoad = lib.loadavg();
  sampler.start();
  const quiet = await runTenants('quiet', cfg.quietSecs);
  const quietServer = sampler.stop();
  const quietLog = serverLog(offset);
  offset = quietLog.offset;
  const m1 = await metrics();
  log(`quiet phase done: max fds ${quietServer.maxFds}, max RSS ${lib.mib(quietServer.maxRssKiB)}`);
  await lib.sleep(5000);

  // Abusive: the abusers first, then after the ramp the same well-behaved workload.
  log(`abusive phase: ${cfg.classes.join(', ')}; the tenants start after ${cfg.rampSecs} s and run ${cfg.soakSecs} s`);
  const abusiveLoad = lib.loadavg();
  sampler.start();
  const abuseMs = (cfg.rampSecs + cfg.soakSecs + 60) * 1000;
  const abusers = cfg.classes.map((cls) => ({ cls, ...runChild('abuse.js', abuserConfig(cls, abuseMs), abuseMs + 60_000) }));
  // In production the abusers' own CPU would be on their machines, not Flow's. Here they
  // share the cores with Flow and the measuring clients, so they run at a lower priority:
  // they still load Flow as much as they manage to (the report counts what they did), but
  // the load generator does not starve the server it is measuring.
  for (const a of abusers) {
    try {
      os.setPriority(a.child.pid, cfg.abuseNice);
    } catch (e) {
      log(`could not renice the ${a.cls} abuser: ${e.message}`);
    }
  }
  await lib.sleep(cfg.rampSecs * 1000);
  const rampSample = sampler.samples[sampler.samples.length - 1];
  log(`ramp done: fds ${rampSample.fds}, RSS ${lib.mib(rampSample.rssKiB)}; starting the tenants`);
  const progress = setInterval(() => {
    const s = sampler.samples[sampler.samples.length - 1];
    log(`t=${Math.round(s.t)} s: fds ${s.fds}, RSS ${lib.mib(s.rssKiB)}, threads ${s.threads}`);
  }, 30_000);
  const abusive = await runTenants('abusive', cfg.soakSecs);
  clearInterval(progress);
  for (const a of abusers) a.child.connected && a.child.send({ type: 'stop' });
  const abuse = {};
  for (const a of abusers) abuse[a.cls] = await a.done;
  const abusiveServer = sampler.stop();
  const abusiveLog = serverLog(offset);
  offset = abusiveLog.offset;
  const m2 = await metrics();

  // After: the abusers are gone; does Flow give back what they held?
  log(`abusers stopped; waiting ${cfg.recoverSecs} s before the last reading`);
  sampler.start();
  await lib.sleep(cfg.recoverSecs * 1000);
  const health = await lib.request({ url: cfg.url, path: '/health', timeoutMs: 5000 });
  const afterServer = sampler.stop();

  const data = {
    cfg: { ...cfg, keys: undefined },
    limits, quiet, abusive, abuse, quietServer, abusiveServer, afterServer,
    quietLog: quietLog.counts, abusiveLog: abusiveLog.counts, health: health.status ?? health.error,
    quietMetrics: metricsDelta(m0, m1), abusiveMetrics: metricsDelta(m1, m2),
    dataBytes: dirBytes(cfg.dataDir), quietLoad, abusiveLoad,
  };
  if (cfg.outDir) {
    fs.mkdirSync(cfg.outDir, { recursive: true });
    fs.writeFileSync(path.join(cfg.outDir, 'soak.json'), JSON.stringify(data));
  }
  const report = require('./report');
  const { section, pass } = report.render(data);
  process.stdout.write(`${section}\n`);
  if (cfg.results && cfg.results !== '-') {
    fs.appendFileSync(cfg.results, `\n${section}\n`);
    log(`appended results to ${cfg.results}`);
  }
  log(pass ? 'verdict: PASS' : 'verdict: FAIL (see the section above)');
}

main().catch((e) => {
  log(`error: ${e.stack || e}`);
  process.exit(1);
});
