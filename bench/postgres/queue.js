'use strict';
// Job-queue benchmark on PostgreSQL: Flow's queue (flow serve on PostgreSQL) against pg-boss,
// on one PostgreSQL server, in the same run. Started by queue.sh (which starts PostgreSQL,
// creates the roles and exports PG_URL, FLOW_BIN, ...); see README.md.
// All traffic is on 127.0.0.1; every loop is bounded by a count and a deadline.
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { spawn, execFileSync } = require('child_process');
const { performance } = require('perf_hooks');
const { Client } = require('pg');

const HERE = __dirname;
const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const list = (k, d) => env(k, d).split(',').map((s) => s.trim()).filter(Boolean);
const S = {
  n: Number(env('N', 20000)),
  batch: Number(env('BATCH', 1000)),
  repeat: Number(env('REPEAT', 3)),
  systems: list('SYSTEMS', 'flow-pg,pgboss'),
  // Flow: CONCURRENCYxBATCH/POOL (FLOW_WORKER_CONCURRENCY x FLOW_WORKER_BATCH / FLOW_DB_MAX_CONNECTIONS)
  flowSweep: list('FLOW_SWEEP', '4x16/16,8x16/16,16x16/16,16x64/16,16x64/32'),
  flowSetting: env('FLOW_SETTING', ''),
  // pg-boss: BATCHSIZExLOCALCONCURRENCY/POOL
  bossSweep: list('BOSS_SWEEP', '50x1/16,100x4/16'),
  bossSetting: env('BOSS_SETTING', ''),
  sweepRepeat: Number(env('SWEEP_REPEAT', 2)),
  pollMs: Number(env('POLL_MS', 50)),
  runTimeoutS: Number(env('RUN_TIMEOUT', 120)),
  quietLoad: Number(env('QUIET_LOAD', '1.0')),
  quietWaitS: Number(env('QUIET_WAIT', 600)),
  quietEachS: Number(env('QUIET_EACH', 30)),
  queue: 'analytics-processing',
  pgUrl: env('PG_URL', ''), // superuser, postgres://postgres@127.0.0.1:PORT
  flowBin: env('FLOW_BIN', ''),
  statements: env('STATEMENTS', '1') === '1',
  out: env('OUT_JSON', ''),
};
if (!S.pgUrl) throw new Error('PG_URL is not set (run ./bench/postgres/queue.sh)');
const log = (m) => process.stderr.write(`[pg-queue ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => performance.timeOrigin + performance.now();
const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const port = new URL(S.pgUrl).port;
const urlFor = (user, db) => `postgres://${user}@127.0.0.1:${port}/${db}`;

// --- CPU per process group, % of one core -----------------------------------------------------
const HZ = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
function snap(extra) {
  const procs = {};
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      procs[pid] = [comm, Number(f[11]) + Number(f[12])];
    } catch {
      /* gone */
    }
  }
  const c = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = c.reduce((a, b) => a + b, 0);
  return { t: nowMs(), procs, busy: total - c[3] - c[4], total, self: process.cpuUsage(), extra };
}
function cpuDiff(a, b, named) {
  // named: {label: pid}; other processes by command name (postgres, flow).
  const wall = (b.t - a.t) / 1000;
  const out = { flow: 0, postgres: 0 };
  const byPid = Object.fromEntries(Object.entries(named).map(([k, p]) => [String(p), k]));
  for (const k of Object.keys(named)) out[k] = 0;
  for (const [pid, [comm, ticks]] of Object.entries(b.procs)) {
    const label = byPid[pid] || (comm === 'postgres' ? 'postgres' : comm === 'flow' ? 'flow' : null);
    if (!label) continue;
    const before = a.procs[pid];
    out[label] += (100 * (ticks - (before && before[0] === comm ? before[1] : 0))) / HZ / wall;
  }
  const self = process.cpuUsage(a.self);
  out.driver = (100 * (self.user + self.system)) / 1e6 / wall;
  out.machine = (100 * os.cpus().length * (b.busy - a.busy)) / (b.total - a.total);
  out.else = Math.max(0, out.machine - Object.entries(out).filter(([k]) => k !== 'machine').reduce((x, [, v]) => x + v, 0));
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Math.round(v)]));
}

// --- Processes --------------------------------------------------------------------------------
const LIVE = new Set();
function track(c) {
  LIVE.add(c);
  c.once('exit', () => LIVE.delete(c));
  return c;
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const c of LIVE) c.kill('SIGKILL');
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}
async function stop(c) {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  c.kill('SIGTERM');
  const done = await Promise.race([new Promise((r) => c.once('exit', () => r(true))), sleep(10000).then(() => false)]);
  if (!done) c.kill('SIGKILL');
}
function waitLine(child, re, ms, what) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => fin(new Error(`${what}: nothing matching ${re} within ${ms} ms: ${buf.slice(-300)}`)), ms);
    const onData = (d) => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) fin(null, m);
    };
    const onExit = (code) => fin(new Error(`${what} exited (${code}): ${buf.slice(-500)}`));
    function fin(err, m) {
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.off('exit', onExit);
      child.stdout.resume();
      err ? reject(err) : resolve(m);
    }
    child.stdout.on('data', onData);
    child.once('exit', onExit);
  });
}
async function sql(url, text, params) {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end();
  }
}
let dbSeq = 0;
async function freshDb(owner) {
  const name = `q${process.pid}_${++dbSeq}`;
  await sql(urlFor('postgres', 'postgres'), `CREATE DATABASE ${name} OWNER ${owner}`);
  if (S.statements) {
    // In its own schema: Flow's migration revokes EXECUTE on every function in `public`.
    await sql(urlFor('postgres', name), 'CREATE SCHEMA pgss');
    await sql(urlFor('postgres', name), 'CREATE EXTENSION pg_stat_statements SCHEMA pgss');
  }
  return name;
}
async function dropDb(name) {
  await sql(urlFor('postgres', 'postgres'), `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}
async function topStatements(db) {
  if (!S.statements) return [];
  return sql(
    urlFor('postgres', db),
    `SELECT calls::int, round(total_exec_time::numeric, 0)::float AS total_ms, round(mean_exec_time::numeric, 3)::float AS mean_ms, rows::int,
            regexp_replace(left(query, 160), '\\s+', ' ', 'g') AS query
     FROM pgss.pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)
     ORDER BY total_exec_time DESC LIMIT 5`,
    [db],
  );
}
const resetStatements = async (db) => S.statements && sql(urlFor('postgres', db), 'SELECT pgss.pg_stat_statements_reset()');

// Waits for all N: polls the last job until it is finished, then the counts (one query each).
async function waitDone(client, lastQuery, countQuery, t0, n) {
  const deadline = t0 + S.runTimeoutS * 1000;
  const maxPolls = Math.ceil((S.runTimeoutS * 1000) / S.pollMs) + 1;
  let polls = 0;
  for (; polls < maxPolls && nowMs() < deadline; polls++) {
    const r = await client.query(lastQuery);
    if (r.rows.length && r.rows[0].done) break;
    await sleep(S.pollMs);
  }
  let counts = null;
  for (; polls < 2 * maxPolls && nowMs() < deadline; polls++) {
    counts = (await client.query(countQuery)).rows[0];
    if (Number(counts.completed) >= n || Number(counts.failed) > 0) break;
    await sleep(S.pollMs);
  }
  return counts;
}

// --- Flow on PostgreSQL -------------------------------------------------------------------------
function parseFlow(s) {
  const m = /^(\d+)x(\d+)\/(\d+)$/.exec(s);
  if (!m) throw new Error(`bad Flow setting ${s} (want CONCURRENCYxBATCH/POOL, e.g. 16x64/16)`);
  return { name: s, concurrency: +m[1], batch: +m[2], pool: +m[3] };
}
function flowEnv(setting, db) {
  const e = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLOW_') && k !== 'DATABASE_URL') e[k] = v;
  e.RUST_LOG = 'warn';
  e.DATABASE_URL = urlFor('flow_app', db);
  if (setting) {
    e.FLOW_WORKER_CONCURRENCY = String(setting.concurrency);
    e.FLOW_WORKER_BATCH = String(setting.batch);
    e.FLOW_DB_MAX_CONNECTIONS = String(setting.pool);
  }
  return e;
}
async function runFlow(setting) {
  const n = S.n;
  const db = await freshDb('flow_owner');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flow-pg-queue-'));
  let child = null;
  const admin = new Client({ connectionString: urlFor('postgres', db) });
  const result = { system: 'flow-pg', setting: setting.name, n, loadavg: loadavg() };
  try {
    execFileSync(S.flowBin, ['migrate'], { env: { ...flowEnv(null, db), DATABASE_URL: urlFor('flow_owner', db) }, timeout: 60000, stdio: ['ignore', 'pipe', 'pipe'] });
    const cli = (...a) => execFileSync(S.flowBin, a, { env: flowEnv(null, db), timeout: 30000, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    const slug = (/^tenant:\s+(\S+)/m.exec(cli('tenant', 'create', 'Bench')) || [])[1];
    const key = (/^api key:\s+(flow_sk_\S+)/m.exec(cli('key', 'create', '--tenant', slug, '--name', 'bench', '--rate-limit', '1000000')) || [])[1];
    if (!key) throw new Error('could not create a tenant and key');
    const logFd = fs.openSync(path.join(dir, 'server.log'), 'w');
    child = track(spawn(S.flowBin, ['serve', '--host', '127.0.0.1', '--port', '0'], { env: { ...flowEnv(setting, db), FLOW_DATA_DIR: dir }, stdio: ['ignore', 'pipe', logFd] }));
    fs.closeSync(logFd);
    const url = (await waitLine(child, /Flow is listening on (http:\/\/127\.0\.0\.1:\d+)/, 30000, 'flow serve'))[1];
    await admin.connect();
    const batches = [];
    for (let i = 0; i < n; i += S.batch) {
      const jobs = [];
      for (let j = i; j < Math.min(n, i + S.batch); j++) jobs.push({ kind: 'ping', payload: {} });
      batches.push(JSON.stringify({ jobs }));
    }
    await resetStatements(db);
    const headers = { 'x-tenant-key': key, 'content-type': 'application/json' };
    const c0 = snap();
    const t0 = nowMs();
    let lastId = null;
    for (const body of batches) {
      const res = await fetch(`${url}/admin/queues/${S.queue}/jobs`, { method: 'POST', headers, body });
      const text = await res.text();
      if (res.status !== 202) throw new Error(`enqueue answered ${res.status}: ${text.slice(0, 300)}`);
      const made = JSON.parse(text);
      lastId = made[made.length - 1].id;
    }
    const tEnq = nowMs();
    const counts = await waitDone(
      admin,
      `SELECT state IN ('completed', 'dead') AS done FROM jobs WHERE id = '${lastId}'`,
      `SELECT count(*) FILTER (WHERE state = 'completed') AS completed, count(*) FILTER (WHERE state = 'dead') AS failed FROM jobs WHERE queue = '${S.queue}'`,
      t0,
      n,
    );
    const cpu = cpuDiff(c0, snap(), { flow: child.pid });
    if (!counts || Number(counts.completed) < n) throw new Error(`only ${counts && counts.completed} of ${n} completed within ${S.runTimeoutS} s`);
    const st = (
      await admin.query(`SELECT extract(epoch FROM max(finished_at)) * 1000 AS last_ms,
        extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - created_at)) * 1000 AS p50,
        extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY finished_at - created_at)) * 1000 AS p99
        FROM jobs WHERE queue = '${S.queue}' AND state = 'completed'`)
    ).rows[0];
    Object.assign(result, {
      jobsPerS: n / ((Number(st.last_ms) - t0) / 1000),
      enqueuePerS: n / ((tEnq - t0) / 1000),
      p50Ms: Number(st.p50),
      p99Ms: Number(st.p99),
      cpu,
      statements: await topStatements(db),
    });
  } finally {
    await admin.end().catch(() => {});
    await stop(child);
    fs.rmSync(dir, { recursive: true, force: true });
    await dropDb(db).catch((e) => log(`drop ${db}: ${e.message}`));
  }
  return result;
}

// --- pg-boss ------------------------------------------------------------------------------------
function parseBoss(s) {
  const m = /^(\d+)x(\d+)\/(\d+)$/.exec(s);
  if (!m) throw new Error(`bad pg-boss setting ${s} (want BATCHSIZExLOCALCONCURRENCY/POOL, e.g. 50x1/16)`);
  return { name: s, batchSize: +m[1], localConcurrency: +m[2], pool: +m[3] };
}
async function runBoss(setting) {
  const { PgBoss } = require('pg-boss');
  const n = S.n;
  const db = await freshDb('postgres');
  const url = urlFor('postgres', db);
  const result = { system: 'pgboss', setting: setting.name, n, loadavg: loadavg() };
  let worker = null;
  const boss = new PgBoss({ connectionString: url, max: 4, supervise: false, schedule: false });
  boss.on('error', (e) => log(`pg-boss (driver): ${e.message}`));
  const admin = new Client({ connectionString: url });
  try {
    await boss.start();
    await boss.createQueue('bench', { partition: true });
    worker = track(
      spawn(process.execPath, [path.join(HERE, 'pgboss-worker.js')], {
        env: { ...process.env, BOSS_URL: url, BOSS_QUEUE: 'bench', BOSS_BATCH: String(setting.batchSize), BOSS_LOCAL: String(setting.localConcurrency), BOSS_POOL: String(setting.pool) },
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    await waitLine(worker, /^ready/m, 30000, 'pg-boss worker');
    await admin.connect();
    const batches = [];
    const ids = [];
    for (let i = 0; i < n; i += S.batch) {
      const jobs = [];
      for (let j = i; j < Math.min(n, i + S.batch); j++) {
        const id = crypto.randomUUID();
        ids.push(id);
        jobs.push({ id, data: {} });
      }
      batches.push(jobs);
    }
    await resetStatements(db);
    const c0 = snap();
    const t0 = nowMs();
    for (const jobs of batches) await boss.insert('bench', jobs);
    const tEnq = nowMs();
    const counts = await waitDone(
      admin,
      `SELECT state IN ('completed', 'failed') AS done FROM pgboss.job WHERE name = 'bench' AND id = '${ids[ids.length - 1]}'`,
      `SELECT count(*) FILTER (WHERE state = 'completed') AS completed, count(*) FILTER (WHERE state = 'failed') AS failed FROM pgboss.job WHERE name = 'bench'`,
      t0,
      n,
    );
    const cpu = cpuDiff(c0, snap(), { worker: worker.pid });
    if (!counts || Number(counts.completed) < n) throw new Error(`only ${counts && counts.completed} of ${n} completed within ${S.runTimeoutS} s`);
    const st = (
      await admin.query(`SELECT extract(epoch FROM max(completed_on)) * 1000 AS last_ms,
        extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY completed_on - created_on)) * 1000 AS p50,
        extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY completed_on - created_on)) * 1000 AS p99
        FROM pgboss.job WHERE name = 'bench' AND state = 'completed'`)
    ).rows[0];
    Object.assign(result, {
      jobsPerS: n / ((Number(st.last_ms) - t0) / 1000),
      enqueuePerS: n / ((tEnq - t0) / 1000),
      p50Ms: Number(st.p50),
      p99Ms: Number(st.p99),
      cpu,
      statements: await topStatements(db),
    });
  } finally {
    await admin.end().catch(() => {});
    await stop(worker);
    await Promise.race([boss.stop({ graceful: false, wait: true }).catch(() => {}), sleep(10000)]);
    await dropDb(db).catch((e) => log(`drop ${db}: ${e.message}`));
  }
  return result;
}

// --- Orchestration ------------------------------------------------------------------------------
async function quiet(capS) {
  const start = nowMs();
  while (os.loadavg()[0] >= S.quietLoad && nowMs() - start < capS * 1000) await sleep(5000);
  return { load: loadavg(), waitedS: Math.round((nowMs() - start) / 1000) };
}
async function runOne(system, setting) {
  const q = await quiet(S.quietEachS);
  const label = `${system} ${setting.name} N=${S.n}`;
  try {
    const r = system === 'flow-pg' ? await runFlow(setting) : await runBoss(setting);
    r.loadBefore = `${q.load} (waited ${q.waitedS} s)`;
    log(`${label}: ${Math.round(r.jobsPerS)} jobs/s end to end (enqueue ${Math.round(r.enqueuePerS)}/s), p50 ${r.p50Ms.toFixed(0)} ms, p99 ${r.p99Ms.toFixed(0)} ms; CPU ${JSON.stringify(r.cpu)}; load ${r.loadBefore}`);
    return r;
  } catch (e) {
    log(`${label}: FAILED: ${e.message}`);
    return { system, setting: setting.name, n: S.n, error: e.message, loadBefore: q.load };
  }
}
const mean = (rs) => {
  const ok = rs.filter((r) => !r.error);
  return ok.length ? ok.reduce((a, r) => a + r.jobsPerS, 0) / ok.length : 0;
};
async function sweep(system, names, parse) {
  const runs = [];
  for (let rep = 0; rep < S.sweepRepeat; rep++) for (const name of names) runs.push(await runOne(system, parse(name)));
  const best = names.map((name) => ({ name, mean: mean(runs.filter((r) => r.setting === name)) })).sort((a, b) => b.mean - a.mean)[0];
  return { runs, best: parse(best.name) };
}

async function main() {
  log(`systems ${S.systems.join(', ')}; N=${S.n}`);
  const q0 = await quiet(S.quietWaitS);
  log(`load average ${q0.load} after waiting ${q0.waitedS} s`);
  const out = { settings: S, quietStart: q0, sweeps: {}, best: {}, runs: [] };
  if (S.systems.includes('flow-pg')) {
    if (S.flowSetting) out.best['flow-pg'] = parseFlow(S.flowSetting);
    else ({ runs: out.sweeps['flow-pg'], best: out.best['flow-pg'] } = await sweep('flow-pg', S.flowSweep, parseFlow));
    log(`Flow setting used: ${out.best['flow-pg'].name}`);
  }
  if (S.systems.includes('pgboss')) {
    if (S.bossSetting) out.best.pgboss = parseBoss(S.bossSetting);
    else ({ runs: out.sweeps.pgboss, best: out.best.pgboss } = await sweep('pgboss', S.bossSweep, parseBoss));
    log(`pg-boss setting used: ${out.best.pgboss.name}`);
  }
  for (let rep = 0; rep < S.repeat; rep++) for (const s of S.systems) out.runs.push(await runOne(s, out.best[s]));
  out.loadEnd = loadavg();
  fs.writeFileSync(S.out, JSON.stringify(out, null, 2));
}

main().then(
  () => process.exit(0),
  (e) => {
    log(`error: ${e.stack || e.message}`);
    process.exit(1);
  },
);
