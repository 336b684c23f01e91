// The OpenID provider of tests/peers/test_oauth2.py: node oidc-provider with a private
// configuration, on a loopback port, until it is killed.
//
// Usage: node provider.mjs CONFIG.json. The JSON (written by the test) holds:
//   port, issuer        where it listens and what it calls itself
//   jwks                {"keys": [private JWKs]}; the first RS256 key signs
//   client_secret       of the mail client "mailclient" (authorization code flow)
//   introspect_secret   of "mailwarden", the resource server that introspects
//   redirect_uri        the mail client's redirect URI (nothing listens there)
//   resource            the IMAP service's resource indicator: the tokens' "aud"
//   ttl                 access token lifetime, seconds
//
// Tokens: a resource ending in "opaque" gets an opaque access token (for
// introspection) with the IMAP service's audience; any other resource a JWT whose
// "aud" is that resource. Logins: devInteractions (any password), the login name is
// the account id, "sub", and the "email" claim.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const provider = new Provider(cfg.issuer, {
  jwks: cfg.jwks,
  clients: [
    {
      client_id: 'mailclient',
      client_secret: cfg.client_secret,
      redirect_uris: [cfg.redirect_uri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
    {
      client_id: 'mailwarden',
      client_secret: cfg.introspect_secret,
      redirect_uris: [],
      grant_types: [],
      response_types: [],
    },
  ],
  features: {
    devInteractions: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => cfg.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        const opaque = resource.endsWith('opaque');
        return {
          scope: 'mail',
          audience: opaque ? cfg.resource : resource,
          accessTokenTTL: cfg.ttl,
          accessTokenFormat: opaque ? 'opaque' : 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: (ctx, token) => (token.accountId ? { email: token.accountId } : undefined),
});

provider.listen(cfg.port, '127.0.0.1');
console.log(`oidc-provider ${cfg.issuer} listening`);
