'use strict';
// Helpers for bench/postgres/run.sh (Node 22, no dependencies). All traffic to 127.0.0.1.
//
//   node tools.js jwt SECRET TENANT_ID                 print an HS256 JWT {tenant_id, exp: +1 h}
//   node tools.js seed URL KEY N EVERY TAG             create N leads through Flow's API (unique
//                                                      emails), then PATCH every EVERY-th one to
//                                                      CONTACTED; prints "created N contacted M"
//   node tools.js flow-bodies N TAG FILE               N lines of POST /leads JSON, unique emails
//   node tools.js create flow|gql URL AUTH CONC SECONDS TAG OUT [TENANT_ID]
//                                                      closed-loop create load: CONC keep-alive
//                                                      connections for SECONDS, every request a
//                                                      new lead with a unique email (and, for
//                                                      PostGraphile, a new uuid v4 id); writes
//                                                      oha-shaped JSON to OUT (a 200 answer
//                                                      carrying GraphQL "errors" counts as an
//                                                      error, not a success)
//   node tools.js list-query                           the GraphQL list request body
const crypto = require('crypto');
const fs = require('fs');

const [cmd, ...args] = process.argv.slice(2);

function b64url(x) {
  return Buffer.from(x).toString('base64url');
}

// Fields both systems return for a lead (Flow's Lead JSON, PostGraphile's Lead type).
const LEAD_FIELDS = 'rowId tenantId contactId firstName lastName email phone company source status notes assignedTo createdAt updatedAt';

async function seed(url, key, n, every, tag) {
  const headers = { 'x-tenant-key': key, 'content-type': 'application/json' };
  const deadline = Date.now() + 300_000;
  const ids = new Array(n);
  let next = 0;
  async function worker() {
    while (next < n) {
      if (Date.now() > deadline) throw new Error('seeding took longer than 300 s');
      const i = next++;
      const body = { firstName: `Seed${i}`, lastName: 'Lead', email: `${tag}-seed-${i}@example.com`, company: 'Acme', source: 'website' };
      const res = await fetch(`${url}/leads`, { method: 'POST', headers, body: JSON.stringify(body) });
      const text = await res.text();
      if (res.status !== 201) throw new Error(`POST /leads answered ${res.status}: ${text.slice(0, 200)}`);
      ids[i] = JSON.parse(text).id;
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker));
  let contacted = 0;
  const targets = ids.filter((_, i) => every > 0 && i % every === every - 1);
  let k = 0;
  async function patcher() {
    while (k < targets.length) {
      const id = targets[k++];
      const res = await fetch(`${url}/leads/${id}/status`, { method: 'PATCH', headers, body: JSON.stringify({ status: 'CONTACTED' }) });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`PATCH /leads/${id}/status answered ${res.status}: ${text.slice(0, 200)}`);
      contacted++;
    }
  }
  await Promise.all(Array.from({ length: 8 }, patcher));
  console.log(`created ${n} contacted ${contacted}`);
}

// oha can send a fixed body only (-Z picks lines at random), and PostGraphile needs a new
// primary key per request: this small closed-loop driver sends the creates of both systems.
function createLoad(kind, url, auth, conc, seconds, tag, out, tenant) {
  const http = require('http');
  conc = Number(conc);
  const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
  const target = new URL(url);
  const headers = { 'content-type': 'application/json' };
  if (kind === 'flow') headers['x-tenant-key'] = auth;
  else headers.authorization = `Bearer ${auth}`;
  const query = `mutation($input: CreateLeadInput!) { createLead(input: $input) { lead { ${LEAD_FIELDS} } } }`;
  let seq = 0;
  const body = () => {
    const i = seq++;
    const email = `${tag}-${i}@example.com`;
    if (kind === 'flow') return JSON.stringify({ firstName: 'Bench', lastName: 'User', email, company: 'Acme', source: 'website' });
    // What a PostGraphile client must supply itself: the id, tenant, status and timestamps.
    const now = new Date().toISOString();
    const lead = { rowId: crypto.randomUUID(), tenantId: tenant, firstName: 'Bench', lastName: 'User', email, company: 'Acme', source: 'website', status: 'NEW', createdAt: now, updatedAt: now };
    return JSON.stringify({ query, variables: { input: { lead } } });
  };
  const lat = [];
  const codes = {};
  const errors = {};
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(Math.round(Number(seconds) * 1e9));
  const one = () =>
    new Promise((resolve) => {
      const b = body();
      const s = process.hrtime.bigint();
      const req = http.request({ host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(b) }, timeout: 30000 }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          lat.push(Number(process.hrtime.bigint() - s) / 1e9);
          let code = String(res.statusCode);
          if (code === '200' && kind === 'gql' && Buffer.concat(chunks).includes('"errors"')) {
            code = '200-graphql-errors';
            if (!errors.sample) errors.sample = Buffer.concat(chunks).toString().slice(0, 300);
          }
          codes[code] = (codes[code] || 0) + 1;
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => {
        errors[e.message] = (errors[e.message] || 0) + 1;
        resolve();
      });
      req.end(b);
    });
  const loop = async () => {
    while (process.hrtime.bigint() < end) await one();
  };
  return Promise.all(Array.from({ length: conc }, loop)).then(() => {
    const total = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(cpu0);
    lat.sort((a, b) => a - b);
    const p = (q) => (lat.length ? lat[Math.min(lat.length - 1, Math.ceil(q * lat.length) - 1)] : null);
    const sample = errors.sample;
    delete errors.sample;
    const outJson = {
      summary: { total, requestsPerSec: lat.length / total },
      statusCodeDistribution: Object.fromEntries(Object.entries(codes).map(([k, v]) => [k === '200-graphql-errors' ? '299' : k, v])),
      graphqlErrors: codes['200-graphql-errors'] || 0,
      graphqlErrorSample: sample,
      errorDistribution: errors,
      latencyPercentiles: { p50: p(0.5), p95: p(0.95), p99: p(0.99) },
      driverCpuSeconds: (c.user + c.system) / 1e6,
      sent: seq,
    };
    if (outJson.graphqlErrors) {
      // Not a success: move them out of the 2xx range.
      delete outJson.statusCodeDistribution['299'];
      outJson.statusCodeDistribution['600'] = outJson.graphqlErrors;
    }
    fs.writeFileSync(out, JSON.stringify(outJson));
    agent.destroy();
  });
}

async function main() {
  switch (cmd) {
    case 'jwt': {
      const [secret, tenant] = args;
      const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
      const claims = b64url(JSON.stringify({ tenant_id: tenant, exp: Math.floor(Date.now() / 1000) + 3600 }));
      const sig = crypto.createHmac('sha256', secret).update(`${header}.${claims}`).digest('base64url');
      console.log(`${header}.${claims}.${sig}`);
      break;
    }
    case 'seed':
      await seed(args[0], args[1], Number(args[2]), Number(args[3]), args[4]);
      break;
    case 'create':
      await createLoad(...args);
      break;
    case 'list-query':
      // The GraphQL list request (one line of JSON), same page and fields as Flow's list.
      console.log(
        JSON.stringify({
          query: `{ allLeads(condition: {status: "NEW"}, first: 20, orderBy: PRIMARY_KEY_DESC) { nodes { ${LEAD_FIELDS} } pageInfo { hasNextPage endCursor } } }`,
        }),
      );
      break;
    default:
      throw new Error(`unknown command ${cmd}`);
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
