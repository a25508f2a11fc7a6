/**
 * One active hairpin probe: a TCP connect from inside the caller's network namespace (a container's,
 * by its PID: `nsenter --net=/proc/PID/ns/net`, or the host's), from a chosen source port so the
 * conntrack entry and the captured packets can be told apart from everything else. The client is
 * this very Node.js binary (`node -e`), so nothing needs to be installed in the container.
 * The connection is closed as soon as the handshake completes; nothing is sent.
 */
import { run } from '../host/exec.js';
import type { ProbeResult } from './types.js';

const CLIENT = `
const net = require('node:net');
const [host, port, lport, to] = process.argv.slice(1);
const t0 = process.hrtime.bigint();
const ms = () => Number((process.hrtime.bigint() - t0) / 1000n) / 1000;
let done = false;
const finish = (o) => { if (done) return; done = true; process.stdout.write(JSON.stringify(o) + '\\n'); s.destroy(); setTimeout(() => process.exit(0), 20); };
const s = net.connect({ host, port: Number(port), localPort: Number(lport) || undefined });
s.setTimeout(Number(to));
s.on('connect', () => finish({ connected: true, error: null, ms: ms(), localAddr: s.localAddress, localPort: s.localPort }));
s.on('timeout', () => finish({ connected: false, error: 'ETIMEDOUT', ms: ms(), localAddr: null, localPort: Number(lport) }));
s.on('error', (e) => finish({ connected: false, error: e.code || e.message, ms: ms(), localAddr: null, localPort: Number(lport) }));
`;

const UDP_CLIENT = `
const dgram = require('node:dgram');
const [host, port, lport, to] = process.argv.slice(1);
const t0 = process.hrtime.bigint();
const ms = () => Number((process.hrtime.bigint() - t0) / 1000n) / 1000;
const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
let done = false;
const finish = (o) => { if (done) return; done = true; process.stdout.write(JSON.stringify(o) + '\\n'); try { s.close(); } catch {} setTimeout(() => process.exit(0), 20); };
s.on('error', (e) => finish({ connected: false, error: e.code || e.message, ms: ms(), localAddr: null, localPort: Number(lport) }));
s.on('message', (m, r) => finish({ connected: true, error: null, ms: ms(), localAddr: null, localPort: Number(lport), from: r.address + ':' + r.port }));
s.bind(Number(lport) || 0, () => {
  s.send(Buffer.from('journey verify hairpin\\n'), Number(port), host);
  setTimeout(() => finish({ connected: false, error: 'NOREPLY', ms: ms(), localAddr: null, localPort: Number(lport) }), Number(to));
});
`;

export interface ProbeSpec {
  /** pid, netns path, or null for the host namespace given as `hostNetns`. */
  readonly ns: string | number | null;
  readonly hostNetns?: string;
  readonly dstIp: string;
  readonly dstPort: number;
  readonly srcPort: number;
  readonly timeoutMs: number;
  /** tcp (default): a connect; udp: one datagram, then wait for any answer. */
  readonly proto?: 'tcp' | 'udp';
}

/**
 * Runs one probe; never throws (a probe that cannot run reports its error). When the source port is
 * taken in the caller's namespace, tries the next ones (the result's localPort says which was used).
 */
export async function runProbe(spec: ProbeSpec): Promise<ProbeResult> {
  let r = await runProbeOnce(spec);
  for (let i = 1; i <= 3 && r.error === 'EADDRINUSE'; i++) r = await runProbeOnce({ ...spec, srcPort: spec.srcPort + 101 * i });
  return r;
}

async function runProbeOnce(spec: ProbeSpec): Promise<ProbeResult> {
  const netns = spec.ns ?? spec.hostNetns;
  const argv = [
    process.execPath,
    '-e',
    spec.proto === 'udp' ? UDP_CLIENT : CLIENT,
    spec.dstIp,
    String(spec.dstPort),
    String(spec.srcPort),
    String(spec.timeoutMs),
  ];
  try {
    const r = await run(argv, { ...(netns !== undefined ? { netns } : {}), allowFailure: true, timeoutMs: spec.timeoutMs + 5_000 });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    const o = JSON.parse(line) as ProbeResult;
    return {
      connected: o.connected === true,
      error: o.error ?? null,
      ms: Number(o.ms) || 0,
      localAddr: o.localAddr ?? null,
      localPort: spec.srcPort,
    };
  } catch (e) {
    return { connected: false, error: `probe could not run: ${(e as Error).message}`, ms: 0, localAddr: null, localPort: spec.srcPort };
  }
}

/** A block of source ports for one run (random, above the usual ephemeral start, unlikely in use). */
export function sourcePortBlock(n: number, rand: () => number = Math.random): number[] {
  const base = 33_000 + Math.floor(rand() * (60_000 - 33_000 - n - 1));
  return Array.from({ length: n }, (_, i) => base + i);
}
