/**
 * `--listen` as servers take it: `HOST`, `HOST:PORT`, `[IPv6]`, `[IPv6]:PORT`, `:PORT`, or a bare
 * IPv6 literal (`::1`). `--port` gives the port when the address has none; both at once must agree.
 */
import { isIP } from 'node:net';
import { JourneyError } from '../model/errors.js';

export const DEFAULT_PORT = 9339;

function portOf(text: string, what: string): number {
  const n = Number(text);
  if (text === '' || !Number.isInteger(n) || n < 0 || n > 65535) throw new JourneyError('E_USAGE', `${what}: not a port: "${text}"`);
  return n;
}

export function parseListen(listen: string, portOption: string | undefined): { host: string; port: number } {
  let host = listen.trim();
  let port: number | undefined;
  const bracket = /^\[([^\]]+)\](?::(.*))?$/.exec(host);
  if (bracket) {
    host = bracket[1] ?? '';
    if (bracket[2] !== undefined) port = portOf(bracket[2], '--listen');
    if (isIP(host) !== 6) throw new JourneyError('E_USAGE', `--listen: "[${host}]" is not an IPv6 address`);
  } else if (isIP(host) !== 6) {
    const i = host.lastIndexOf(':');
    if (i >= 0) {
      port = portOf(host.slice(i + 1), '--listen');
      host = host.slice(0, i) || '127.0.0.1';
    }
  }
  if (host === '') throw new JourneyError('E_USAGE', '--listen: no address');
  const fromOption = portOption === undefined ? undefined : portOf(portOption, '--port');
  if (port !== undefined && fromOption !== undefined && port !== fromOption) {
    throw new JourneyError('E_USAGE', `--listen ${listen} and --port ${portOption} name two ports: give one`);
  }
  return { host, port: port ?? fromOption ?? DEFAULT_PORT };
}
