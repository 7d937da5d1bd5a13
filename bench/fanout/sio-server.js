'use strict';
// The peer: a socket.io server that broadcasts to a room. It answers the same
// `POST /leads` the writer sends to Flow by building an event frame shaped and sized like
// Flow's LEAD_CREATED frame and emitting it to the tenant's room: io.to(room).emit(...).
// Nothing is stored (Flow commits every lead to SQLite before it is broadcast).
//
// Usage: node sio-server.js  (env: SIO_KEY = the key clients and the writer present)
// Prints "socket.io is listening on http://127.0.0.1:PORT" once it accepts connections.

const http = require('http');
const crypto = require('crypto');
const { Server } = require('socket.io');

const KEY = process.env.SIO_KEY;
if (!KEY) {
  console.error('SIO_KEY is not set');
  process.exit(2);
}
const TENANT = crypto.randomUUID();
const ROOM = `tenant:${TENANT}`;
const APP = 'flow-web';
let seq = 0;
let contactId = null;

function leadFrom(input) {
  const now = new Date().toISOString();
  if (!contactId) contactId = crypto.randomUUID();
  return {
    id: crypto.randomUUID(),
    tenantId: TENANT,
    contactId,
    firstName: input.firstName,
    lastName: input.lastName ?? null,
    email: input.email ?? null,
    phone: input.phone ?? null,
    company: input.company ?? null,
    source: 'api',
    status: 'NEW',
    notes: input.notes ?? null,
    assignedTo: null,
    createdAt: now,
    updatedAt: now,
  };
}

// Same fields as Flow's {"type":"event",...} frame for LEAD_CREATED.
function eventFrame(lead) {
  seq++;
  return {
    type: 'event',
    seq,
    event: {
      id: crypto.randomUUID(),
      type: 'LEAD_CREATED',
      source: 'api',
      target: ['crm-web', 'flow-web'],
      tenantId: TENANT,
      timestamp: new Date().toISOString(),
      data: {
        lead: {
          assignedTo: lead.assignedTo,
          company: lead.company,
          contactId: lead.contactId,
          createdAt: lead.createdAt,
          email: lead.email,
          firstName: lead.firstName,
          id: lead.id,
          lastName: lead.lastName,
          notes: lead.notes,
          phone: lead.phone,
          source: lead.source,
          status: lead.status,
          tenantId: lead.tenantId,
          updatedAt: lead.updatedAt,
        },
      },
      priority: 'medium',
    },
  };
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') return reply(res, 200, { status: 'ok' });
  if (req.method !== 'POST' || req.url !== '/leads') return reply(res, 404, { error: 'not_found' });
  if (req.headers['x-tenant-key'] !== KEY) return reply(res, 401, { error: 'invalid_api_key' });
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > 1 << 20) req.destroy();
    else chunks.push(c);
  });
  req.on('end', () => {
    let input;
    try {
      input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return reply(res, 400, { error: 'invalid_json' });
    }
    if (!input || typeof input.firstName !== 'string') return reply(res, 422, { error: 'validation_failed' });
    const lead = leadFrom(input);
    io.to(ROOM).emit('event', eventFrame(lead));
    reply(res, 201, lead);
  });
});

const io = new Server(server, {
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
});

io.use((socket, next) => {
  const key = socket.handshake.auth && socket.handshake.auth.key;
  if (key === KEY) next();
  else next(new Error('unauthorized'));
});

io.on('connection', (socket) => {
  socket.join([ROOM, `app:${APP}`]);
  socket.emit('welcome', {
    protocol: 'bench',
    seq,
    tenantId: TENANT,
    appId: APP,
    rooms: [`app:${APP}`, ROOM],
    type: 'welcome',
  });
});

server.listen(0, '127.0.0.1', () => {
  console.log(`socket.io is listening on http://127.0.0.1:${server.address().port}`);
});

function shutdown() {
  io.close();
  server.close();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
