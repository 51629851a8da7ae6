// A real OpenID Connect provider on loopback (node's `oidc-provider`, certified by the OpenID
// Foundation) for schoolgate's sign-in tests (tests/web_oidc.rs, tests/web_browser.rs).
//
// Environment: REDIRECT_URI (the gateway's callback), CLIENT_ID, CLIENT_SECRET, and optionally
// ISSUER_HOST (default 127.0.0.1). Listens on a free port and prints `listening PORT` once ready.
//
// The accounts (the login form's name, or the authorization request's `login_hint`, which the
// tests add to skip the form):
//   alice     in group grp-netman                      -> network-manager
//   dana      app role Schoolgate.DSL                  -> dsl
//   nobody    in group grp-kitchen only                -> no role: refused
//   wrong-aud alice, but her ID token is re-signed with the provider's own key for aud "someone-else"
//   expired   alice, but her ID token is re-signed with the provider's own key with exp an hour ago
//   forged    alice, but her ID token is signed with a key the provider never published
//   outsider  in group grp-netman, but of another Google-style hosted domain (hd)
// Every other account's hd is school.example.

import http from 'node:http';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    console.error(`provider.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
};
const REDIRECT_URI = env('REDIRECT_URI');
const CLIENT_ID = env('CLIENT_ID', 'schoolgate');
const CLIENT_SECRET = env('CLIENT_SECRET');
const HOST = env('ISSUER_HOST', '127.0.0.1');

const base = { email_verified: true, groups: [], roles: [], hd: 'school.example' };
const ACCOUNTS = {
  alice: { ...base, email: 'alice@school.example', groups: ['grp-netman', 'grp-staff'] },
  dana: { ...base, email: 'dana@school.example', roles: ['Schoolgate.DSL'] },
  nobody: { ...base, email: 'nobody@school.example', groups: ['grp-kitchen'] },
  'wrong-aud': { ...base, email: 'alice@school.example', groups: ['grp-netman'], tamper: 'aud' },
  expired: { ...base, email: 'alice@school.example', groups: ['grp-netman'], tamper: 'exp' },
  forged: { ...base, email: 'alice@school.example', groups: ['grp-netman'], tamper: 'key' },
  outsider: { ...base, email: 'it@elsewhere.example', groups: ['grp-netman'], hd: 'elsewhere.example' },
};

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };
const { privateKey: strangerKey } = await jose.generateKeyPair('RS256');

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;
const issuer = `http://${HOST}:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingJwk] },
  cookies: { keys: ['schoolgate-test-cookie-key'] },
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'groups', 'roles', 'hd'],
  },
  // The end-user's claims in the ID token itself (as Entra ID and Google put them), not only
  // at the userinfo endpoint.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const a = ACCOUNTS[id];
    if (!a) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: a.email,
          email_verified: a.email_verified,
          preferred_username: id,
          groups: a.groups,
          roles: a.roles,
          hd: a.hd,
        };
      },
    };
  },
});
provider.proxy = false;

// The test accounts' tampered ID tokens, re-signed after the provider issued them.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || !ctx.body || typeof ctx.body.id_token !== 'string') return;
  const claims = jose.decodeJwt(ctx.body.id_token);
  const tamper = ACCOUNTS[claims.sub]?.tamper;
  if (!tamper) return;
  let key = privateKey;
  if (tamper === 'aud') claims.aud = 'someone-else';
  if (tamper === 'exp') {
    const now = Math.floor(Date.now() / 1000);
    claims.iat = now - 7200;
    claims.exp = now - 3600;
  }
  if (tamper === 'key') key = strangerKey;
  ctx.body = {
    ...ctx.body,
    id_token: await new jose.SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: 'test-key-1' })
      .sign(key),
  };
});

const html = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html><head><title>Test provider</title></head><body>${body}</body></html>`);
};

const readForm = (req) =>
  new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (c) => {
      data += c;
    });
    req.on('end', () => resolve(new URLSearchParams(data)));
    req.on('error', reject);
  });

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session } = details;
  if (req.method === 'POST' && req.url.endsWith('/login')) {
    const form = await readForm(req);
    const name = form.get('login') ?? '';
    if (!ACCOUNTS[name]) return html(res, 200, `<p id="error">No account ${name}</p>`);
    return provider.interactionFinished(req, res, { login: { accountId: name } }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'login') {
    if (params.login_hint && ACCOUNTS[params.login_hint]) {
      return provider.interactionFinished(
        req,
        res,
        { login: { accountId: params.login_hint } },
        { mergeWithLastSubmission: false },
      );
    }
    return html(
      res,
      200,
      `<h1>Test provider</h1><form method="post" action="/interaction/${uid}/login">` +
        `<label for="login">Account</label><input id="login" name="login">` +
        `<button id="sign-in" type="submit">Sign in</button></form>`,
    );
  }
  // Consent: everything asked for is granted.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((e) => {
      console.error('interaction failed:', e);
      html(res, 500, `<p id="error">${String(e.message).replace(/</g, '&lt;')}</p>`);
    });
  } else {
    callback(req, res);
  }
});

process.on('SIGTERM', () => process.exit(0));
console.log(`listening ${port}`);
