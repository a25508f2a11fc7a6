/**
 * What `--export nats://SERVER[:4222]/PREFIX` and `serve --from nats://SERVER/PREFIX` share: the
 * URL's parts, the connection options with credentials from the environment (never the command
 * line) and TLS, and the subjects: PREFIX.HOST.EVENT-TYPE (e.g. journey.web1.flow.start).
 */
import { readFileSync } from 'node:fs';
import { credsAuthenticator, type ConnectionOptions } from 'nats';
import { JourneyError } from '../model/errors.js';
import { redactUrl } from './target.js';

/** Credentials and TLS files: environment variables only. */
export const NATS_ENV = {
  user: 'JOURNEY_NATS_USER',
  password: 'JOURNEY_NATS_PASSWORD',
  passwordFile: 'JOURNEY_NATS_PASSWORD_FILE',
  token: 'JOURNEY_NATS_TOKEN',
  tokenFile: 'JOURNEY_NATS_TOKEN_FILE',
  creds: 'JOURNEY_NATS_CREDS',
  tlsCa: 'JOURNEY_NATS_TLS_CA',
  tlsCert: 'JOURNEY_NATS_TLS_CERT',
  tlsKey: 'JOURNEY_NATS_TLS_KEY',
} as const;

export interface NatsUrl {
  readonly server: string;
  /** Subject prefix, dot-separated tokens (default "journey"). */
  readonly prefix: string;
  /** JetStream stream name (default: the prefix in capitals, dots as underscores). */
  readonly stream: string;
  readonly jetstream: boolean;
  readonly tls: boolean;
  readonly params: URLSearchParams;
  readonly redacted: string;
}

const TOKEN_RE = /^[A-Za-z0-9_-]+$/;

/** A subject token from a host name: every character NATS gives a meaning to (. * > space) replaced. */
export function subjectToken(s: string): string {
  const t = s.replace(/[^A-Za-z0-9_-]/g, '_');
  return t === '' ? '_' : t;
}

export function parseNatsUrl(url: URL, known: readonly string[]): NatsUrl {
  if (url.hostname === '') throw new JourneyError('E_USAGE', 'nats://SERVER[:4222]/PREFIX: the server is missing');
  if (url.username !== '' || url.password !== '')
    throw new JourneyError(
      'E_USAGE',
      `nats://: no credentials in the URL (they show in ps): use ${NATS_ENV.user}/${NATS_ENV.password}, ${NATS_ENV.token} or ${NATS_ENV.creds}`,
    );
  const all = ['stream', 'jetstream', 'tls', ...known];
  for (const k of url.searchParams.keys())
    if (!all.includes(k)) throw new JourneyError('E_USAGE', `${redactUrl(url)}: unknown parameter "${k}" (known: ${all.join(', ')})`);
  const tokens = url.pathname.split('/').filter((t) => t !== '');
  const prefixTokens = tokens.length > 0 ? tokens : ['journey'];
  for (const t of prefixTokens)
    if (!TOKEN_RE.test(t))
      throw new JourneyError('E_USAGE', `${redactUrl(url)}: the subject prefix takes letters, digits, _ and - (one token per path segment)`);
  const prefix = prefixTokens.join('.');
  const stream = url.searchParams.get('stream') ?? prefix.toUpperCase().replace(/[.-]/g, '_');
  if (!TOKEN_RE.test(stream)) throw new JourneyError('E_USAGE', `${redactUrl(url)}: stream names take letters, digits, _ and -`);
  const flag = (k: string, dflt: boolean): boolean => {
    const v = url.searchParams.get(k);
    if (v === null) return dflt;
    if (['1', 'true', 'yes', 'on', ''].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    throw new JourneyError('E_USAGE', `${redactUrl(url)}: ${k} is true or false`);
  };
  return {
    server: `${url.hostname}:${url.port !== '' ? url.port : '4222'}`,
    prefix,
    stream,
    jetstream: flag('jetstream', true),
    tls: flag('tls', false),
    params: url.searchParams,
    redacted: redactUrl(url),
  };
}

function readEnvFile(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const p = env[name];
  if (p === undefined || p === '') return undefined;
  try {
    return readFileSync(p, 'utf8');
  } catch (e) {
    throw new JourneyError('E_USAGE', `${name}=${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Connection options: reconnect forever, credentials and TLS from the environment. */
export function natsConnectOptions(u: NatsUrl, env: NodeJS.ProcessEnv, name: string): ConnectionOptions {
  const creds = readEnvFile(env, NATS_ENV.creds);
  const token = env[NATS_ENV.token] ?? readEnvFile(env, NATS_ENV.tokenFile)?.trim();
  const user = env[NATS_ENV.user];
  const pass = env[NATS_ENV.password] ?? readEnvFile(env, NATS_ENV.passwordFile)?.replace(/\r?\n$/, '');
  const ca = readEnvFile(env, NATS_ENV.tlsCa);
  const cert = readEnvFile(env, NATS_ENV.tlsCert);
  const key = readEnvFile(env, NATS_ENV.tlsKey);
  const tls = u.tls || ca !== undefined || cert !== undefined;
  return {
    servers: u.server,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: false,
    ...(creds !== undefined ? { authenticator: credsAuthenticator(new TextEncoder().encode(creds)) } : {}),
    ...(token !== undefined && token !== '' ? { token } : {}),
    ...(user !== undefined && user !== '' ? { user, ...(pass !== undefined ? { pass } : {}) } : {}),
    ...(tls ? { tls: { ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}) } } : {}),
  };
}
