// PostGraphile 5 over Flow's PostgreSQL schema, for bench/postgres/run.sh.
//
// Connects as the role Flow serves with (flow_app: owns nothing, NOBYPASSRLS), exposes the
// `public` schema (Flow's tables), and isolates tenants with Flow's own row-level security:
// every request must carry `Authorization: Bearer <HS256 JWT>` whose `tenant_id` claim is
// put into `app.tenant_id` (what `flow_current_tenant()` reads) for that request's
// transaction. No policies or schema changes of our own.
//
// Settings (environment):
//   DATABASE_URL   postgres://flow_app@127.0.0.1:PORT/flow   (required)
//   JWT_SECRET     the HS256 secret the bench signs its token with (required)
//   PG_POOL_MAX    connections in PostGraphile's pool [16, like Flow's FLOW_DB_MAX_CONNECTIONS]
//   PORT, HOST     where to listen [5678, 127.0.0.1]
// Run: GRAPHILE_ENV=production NODE_ENV=production npx postgraphile -C graphile.config.mjs
import { createHmac, timingSafeEqual } from "node:crypto";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";

const connectionString = process.env.DATABASE_URL;
const secret = process.env.JWT_SECRET;
if (!connectionString || !secret) throw new Error("DATABASE_URL and JWT_SECRET must be set");

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Verifies an HS256 JWT (signature, alg, exp) and returns its claims; throws otherwise.
function verify(token) {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("malformed token");
  const header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
  if (header.alg !== "HS256") throw new Error("unexpected alg");
  const want = createHmac("sha256", secret).update(`${parts[0]}.${parts[1]}`).digest();
  const got = Buffer.from(parts[2], "base64url");
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw new Error("bad signature");
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) throw new Error("token expired");
  if (typeof claims.tenant_id !== "string" || !UUID.test(claims.tenant_id)) throw new Error("no tenant_id claim");
  return claims;
}

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  // Flow's SECURITY DEFINER platform functions (flow_claim_jobs, flow_find_api_key, ...)
  // are granted to flow_app; they must not become GraphQL fields callable by any tenant.
  disablePlugins: ["PgProceduresPlugin"],
  pgServices: [
    makePgService({
      connectionString,
      schemas: ["public"],
      poolConfig: { max: Number(process.env.PG_POOL_MAX || 16) },
    }),
  ],
  grafserv: {
    port: Number(process.env.PORT || 5678),
    host: process.env.HOST || "127.0.0.1",
    graphiql: false,
  },
  grafast: {
    explain: false,
    // Runs for every request: no valid token, no data. The claim becomes a transaction-local
    // setting (SET LOCAL via set_config(..., true)) for the request's queries.
    async context(requestContext) {
      const req = requestContext.node?.req;
      const auth = req?.headers?.authorization || "";
      const m = /^Bearer (\S+)$/.exec(auth);
      if (!m) throw new Error("missing bearer token");
      const claims = verify(m[1]);
      return { pgSettings: { "app.tenant_id": claims.tenant_id } };
    },
  },
};

export default preset;
