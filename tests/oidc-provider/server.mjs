// Test harness: a real third-party OpenID Provider (panva/oidc-provider) for oidcproxy's
// integration tests. Started and stopped by tests/support/nodeidp.py; never used in production.
//
//   node server.mjs [config.json]        (or the JSON itself in env OIDC_TEST_CONFIG)
//
// Prints exactly one line "LISTENING <issuer>" on stdout once the socket accepts connections;
// everything else (oidc-provider's dev warnings, errors) goes to stderr. Every config key is
// optional; nodeidp.py documents them and DEFAULTS below shows their defaults.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider from 'oidc-provider';

const DEFAULTS = {
  host: '127.0.0.1',
  port: 0, // 0: the OS picks; the issuer is known only after listen(), so we build the Provider then
  issuer: undefined, // default `${scheme}://${host}:${port}`; an origin only (no path)
  proxy: true, // trust X-Forwarded-Proto/Host, so the issuer's URLs are right behind NGINX
  clients: [
    {
      client_id: 'oidcproxy',
      client_secret: 'oidcproxy-secret',
      redirect_uris: ['http://127.0.0.1/oauth2/callback', 'https://localhost/oauth2/callback'],
      post_logout_redirect_uris: ['http://127.0.0.1/*', 'https://localhost/*'],
    },
  ],
  users: {},
  extra_groups: 0,
  extra_claims: [],
  conform_id_token_claims: false,
  ttl: {},
  signing_alg: 'RS256',
  key_file: undefined,
  new_key: false,
  keep_old_keys: false,
  skip_consent: false,
  // A refresh returns a new refresh token and consumes the old one; reusing a consumed one gets
  // invalid_grant and revokes the grant (Keycloak "Revoke Refresh Token", Okta, Auth0 do the same).
  rotate_refresh_tokens: true,
  tls: undefined,
  // oidc-provider refuses outgoing requests (back-channel logout) to loopback and other special-use
  // addresses (SSRF protection); the proxy under test listens on 127.0.0.1, so tests allow it here.
  allow_loopback_requests: false,
  exit_on_stdin_eof: false,
};

const TTL_DEFAULTS = {
  AccessToken: 3600,
  AuthorizationCode: 60,
  IdToken: 3600,
  RefreshToken: 24 * 3600,
  Grant: 24 * 3600,
  Session: 24 * 3600,
  Interaction: 3600,
};

function loadConfig() {
  const raw = process.argv[2] ? fs.readFileSync(process.argv[2], 'utf8') : process.env.OIDC_TEST_CONFIG;
  return { ...DEFAULTS, ...(raw ? JSON.parse(raw) : {}) };
}

// --- accounts ---------------------------------------------------------------------------------

function syntheticGroups(n) {
  return Array.from({ length: n }, (_, i) => `group-${String(i + 1).padStart(4, '0')}`);
}

function accountClaims(config, login) {
  const known = config.users[login];
  const email = login.includes('@') ? login : `${login}@example.com`;
  const base = known ?? {
    email, email_verified: true, name: login, preferred_username: login.split('@')[0], groups: [],
  };
  return {
    ...base,
    sub: login,
    groups: [...(base.groups ?? []), ...syntheticGroups(config.extra_groups)],
  };
}

// --- signing keys -----------------------------------------------------------------------------

function generateJwk(alg) {
  const [type, options] = alg === 'ES256'
    ? ['ec', { namedCurve: 'P-256' }]
    : ['rsa', { modulusLength: 2048 }];
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`,
    alg,
    use: 'sig',
  };
}

// key_file lets a restart on the same port keep its keys (reuse) or change them (new_key),
// optionally still publishing the old ones (keep_old_keys) as a real rotation would.
// oidc-provider signs with the first key that fits the algorithm, so the new key goes first.
function signingKeys(config) {
  const { key_file: file, signing_alg: alg } = config;
  const old = file && fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')).keys : [];
  let keys;
  if (old.length && !config.new_key) {
    keys = old;
  } else {
    keys = [generateJwk(alg), ...(config.keep_old_keys ? old : [])];
  }
  if (file) {
    fs.writeFileSync(file, JSON.stringify({ keys }, null, 2), { mode: 0o600 });
  }
  return keys;
}

// --- redirect URI patterns --------------------------------------------------------------------

// The proxy under test listens on an ephemeral port known only after this provider started, so
// a registered URI without an explicit port matches any port on the same scheme, host and path
// (RFC 8252 7.3 allows this for loopback; here it is a test-only relaxation for web clients too).
// A registered path ending in "*" matches by prefix.
function uriMatches(value, registered) {
  const got = URL.parse(value);
  const want = URL.parse(registered);
  if (!got || !want || got.hash || got.protocol !== want.protocol
      || got.hostname !== want.hostname || got.search !== want.search) {
    return false;
  }
  if (want.port && got.port !== want.port) {
    return false;
  }
  return want.pathname.endsWith('*')
    ? got.pathname.startsWith(want.pathname.slice(0, -1))
    : got.pathname === want.pathname;
}

function allowRedirectPatterns(provider) {
  const proto = provider.Client.prototype;
  const { redirectUriAllowed, postLogoutRedirectUriAllowed } = proto;
  proto.redirectUriAllowed = function allowed(value) {
    return redirectUriAllowed.call(this, value)
      || this.redirectUris.some((uri) => uriMatches(value, uri));
  };
  proto.postLogoutRedirectUriAllowed = function allowed(value) {
    return postLogoutRedirectUriAllowed.call(this, value)
      || (this.postLogoutRedirectUris ?? []).some((uri) => uriMatches(value, uri));
  };
}

// --- outgoing requests ------------------------------------------------------------------------

// oidc-provider passes a dispatcher that destroys sockets to special-use addresses (loopback among
// them). With allow_loopback_requests, requests to a loopback host go out without it; any other
// host keeps the protection.
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

function loopbackFetch(url, options) {
  if (LOOPBACK.has(new URL(url).hostname)) {
    const { dispatcher: _ignored, ...rest } = options;
    return globalThis.fetch(url, rest);
  }
  return globalThis.fetch(url, options);
}

// --- provider ---------------------------------------------------------------------------------

function clientMetadata(client, alg) {
  return {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: alg,
    ...client,
  };
}

// With skip_consent the first authorization is granted everything it asked for, as an IdP
// configured for first-party clients does; otherwise devInteractions shows its consent page.
async function autoGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  if (grantId) {
    return oidc.provider.Grant.find(grantId);
  }
  if (!oidc.session.accountId) {
    return undefined; // not signed in yet: the login prompt comes first
  }
  const grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  grant.addOIDCClaims([...oidc.requestParamClaims]);
  await grant.save();
  return grant;
}

function buildProvider(config, issuer) {
  const configuration = {
    clients: config.clients.map((client) => clientMetadata(client, config.signing_alg)),
    jwks: { keys: signingKeys(config) },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // Claims in the ID token even for response_type=code (OIDC Core 5.4 lets the OP choose).
    conformIdTokenClaims: Boolean(config.conform_id_token_claims),
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
    // "groups" is also part of "profile": the proxy asks for "openid email profile" by default.
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'groups', ...config.extra_claims],
      groups: ['groups'],
    },
    findAccount: (_ctx, sub) => ({
      accountId: sub,
      claims: () => accountClaims(config, sub),
    }),
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true },
      revocation: { enabled: true },
    },
    ...(config.allow_loopback_requests ? { fetch: loopbackFetch } : {}),
    pkce: { required: () => false },
    // Refresh tokens for every client allowed the grant, not only with offline_access; rotated
    // on every use (unless rotate_refresh_tokens is false) so the proxy must store the new one.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => Boolean(config.rotate_refresh_tokens),
    ttl: { ...TTL_DEFAULTS, ...config.ttl },
    ...(config.skip_consent ? { loadExistingGrant: autoGrant } : {}),
    renderError: (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  };
  const provider = new Provider(issuer, configuration);
  provider.proxy = config.proxy;
  allowRedirectPatterns(provider);
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error',
    'backchannel.error']) {
    provider.on(event, (_ctx, err) => console.error(`[oidc-provider] ${event}:`, err?.message ?? err));
  }
  return provider;
}

function listen(server, config) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve(server.address().port));
  });
}

async function main() {
  const config = loadConfig();
  const { tls } = config;
  let handler = (_req, res) => { res.statusCode = 503; res.end(); };
  const dispatch = (req, res) => handler(req, res);
  const server = tls
    ? https.createServer({ cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) }, dispatch)
    : http.createServer(dispatch);
  const port = await listen(server, config);
  const issuer = config.issuer ?? `${tls ? 'https' : 'http'}://${config.host}:${port}`;
  const provider = buildProvider(config, issuer);
  // Static clients are otherwise validated on first use; a bad test config should fail here.
  await Promise.all(config.clients.map(({ client_id: id }) => provider.Client.find(id)));
  handler = provider.callback();
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (config.exit_on_stdin_eof) {
    // nodeidp.py holds our stdin open: EOF means it died without stopping us, so don't linger.
    process.stdin.on('end', stop);
    process.stdin.resume();
  }
  process.stdout.write(`LISTENING ${issuer}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
