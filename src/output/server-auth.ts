/**
 * Who may talk to `journey serve`.
 *
 * - Loopback listen addresses (127.0.0.0/8, ::1, localhost) need no token (a token given anyway is
 *   enforced); any other address — including 0.0.0.0 and :: — needs one, or the server refuses
 *   to start (E_USAGE).
 * - The token is accepted as `Authorization: Bearer <token>` (tools), as the `journey_token` cookie
 *   (the web page: GET /?token=... sets it and redirects to /), or as `?token=` on /events and
 *   /metrics (for clients that cannot set headers; it may end up in logs, prefer the header).
 * - Browsers: a WebSocket upgrade carrying an Origin must come from the same origin as the page
 *   (Origin host == Host header) — otherwise any web site the user visits could read the stream of
 *   a loopback server. Requests whose Host header is not an address or name of this server are
 *   refused on loopback (DNS rebinding).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { JourneyError } from '../model/errors.js';

export const TOKEN_COOKIE = 'journey_token';

/** Whether an address (or "localhost") is a loopback address. */
export function isLoopbackAddress(addr: string): boolean {
  const a = addr.replace(/^\[|\]$/g, '').toLowerCase();
  if (a === 'localhost' || a === 'localhost.') return true;
  const v = isIP(a);
  if (v === 4) return a.startsWith('127.');
  if (v === 6) {
    if (a === '::1' || a === '0:0:0:0:0:0:0:1') return true;
    const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
    return m?.[1]?.startsWith('127.') === true;
  }
  return false;
}

/**
 * Checks the listen address and the token before anything listens. Returns the token to enforce
 * (null: none).
 */
export function authPolicy(listen: string, token: string | undefined): string | null {
  if (token !== undefined && token.length > 0) {
    if (token.length < 16) {
      throw new JourneyError('E_USAGE', 'the token must be at least 16 characters (e.g. `openssl rand -hex 16`)');
    }
    return token;
  }
  if (!isLoopbackAddress(listen)) {
    throw new JourneyError(
      'E_USAGE',
      `refusing to listen on ${listen} without a token: anyone who can reach it would see every flow. ` +
        'Give --token or set JOURNEY_TOKEN, or listen on 127.0.0.1',
      { listen },
    );
  }
  return null;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Constant-time comparison of a presented token with the expected one. */
export function tokenEquals(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (header === undefined) return out;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    const k = part.slice(0, i).trim();
    let v = part.slice(i + 1).trim();
    try {
      v = decodeURIComponent(v);
    } catch {
      // keep as is
    }
    out.set(k, v);
  }
  return out;
}

export type AuthResult =
  | { readonly ok: true; readonly via: 'none' | 'header' | 'cookie' | 'query' }
  | { readonly ok: false; readonly status: 401 | 403; readonly reason: string };

/** Authenticates one HTTP request (plain or upgrade) against the expected token (null: open). */
export function authenticate(req: IncomingMessage, url: URL, expected: string | null): AuthResult {
  if (expected === null) return { ok: true, via: 'none' };
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m?.[1] !== undefined && tokenEquals(m[1], expected)) return { ok: true, via: 'header' };
    return { ok: false, status: 401, reason: 'bad-token' };
  }
  const q = url.searchParams.get('token');
  if (q !== null) {
    return tokenEquals(q, expected) ? { ok: true, via: 'query' } : { ok: false, status: 401, reason: 'bad-token' };
  }
  const c = parseCookies(req.headers.cookie).get(TOKEN_COOKIE);
  if (c !== undefined) {
    return tokenEquals(c, expected) ? { ok: true, via: 'cookie' } : { ok: false, status: 401, reason: 'bad-token' };
  }
  return { ok: false, status: 401, reason: 'no-token' };
}

/** The host part of a Host header ("[::1]:9339" -> "::1"). */
export function hostOnly(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  const i = h.lastIndexOf(':');
  return i > 0 && h.indexOf(':') === i ? h.slice(0, i) : h;
}

/**
 * Same-origin check for browsers: an Origin header, when present, must name the Host the request
 * was sent to. Tools (no Origin) pass.
 */
export function originAllowed(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = req.headers.host;
  if (host === undefined) return false;
  try {
    return new URL(origin).host.toLowerCase() === host.trim().toLowerCase();
  } catch {
    return false;
  }
}

/**
 * DNS-rebinding guard for an open (token-less, loopback) server: the Host header must be an IP
 * address or localhost, never a name that could have been rebound to 127.0.0.1.
 */
export function hostAllowed(req: IncomingMessage, open: boolean): boolean {
  if (!open) return true;
  const host = req.headers.host;
  if (host === undefined) return true; // HTTP/1.0 tools
  const h = hostOnly(host);
  return isIP(h) !== 0 || h === 'localhost' || h === 'localhost.';
}
