/**
 * NATS credentials and TLS for `--export nats://` and `serve --from`, against Debian's nats-server
 * on loopback: a user/password server refuses journey without the environment's credentials
 * (E_EXPORT, exit status 15) and takes it with them (also from a password file); a TLS-only server
 * is reached with the CA from JOURNEY_NATS_TLS_CA; a URL with credentials is refused (E_USAGE).
 * Events go through for real (the recorded lab replay), read back by `serve --from`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { removeDir, runJourney, startNatsServer, type NatsServer } from './export-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');
const FIX = join(ROOT, 'test/fixtures/watch/default/');
const REPLAY = [
  '--read',
  `${FIX}eth0.pcap`,
  `${FIX}docker0.pcap`,
  '--conntrack',
  `${FIX}conntrack.txt`,
  '--docker-snapshot',
  `${FIX}docker.json`,
  '--ruleset',
  `${FIX}iptables-save.txt`,
  '--host-addrs',
  `${FIX}addrs.json`,
  '--host-routes',
  `${FIX}routes.json`,
];
const servers: NatsServer[] = [];
const dir = mkdtempSync(join(tmpdir(), 'journey-nats-auth-'));

afterAll(async () => {
  for (const s of servers) await s.close();
  removeDir(dir);
});

/** The replay exported to `url` with `env`; serve --from with the same env reads it back. */
async function roundTrip(url: string, env: NodeJS.ProcessEnv): Promise<{ sent: number; received: number }> {
  const serve = await runJourney(CLI, ['serve', '--from', url, '--port', '0'], /listening on/, env);
  const w = await runJourney(CLI, ['watch', ...REPLAY, '--json', '--export', url, '--export-host', 'auth1'], null, env);
  expect(await w.exited).toBe(0);
  const sent = Number(/: (\d+) sent, 0 lost/.exec(w.stderr.join('\n'))?.[1] ?? -1);
  await new Promise((r) => setTimeout(r, 1500));
  expect(await serve.stop()).toBe(0);
  const received = Number(/stopped: (\d+) events from 1 hosts \(auth1\)/.exec(serve.stderr.join('\n'))?.[1] ?? -1);
  return { sent, received };
}

describe('NATS credentials and TLS from the environment', () => {
  it('user/password: refused without them (E_EXPORT), through with them (also from a file); never in the URL', async () => {
    const s = await startNatsServer({ args: ['--user', 'journey', '--pass', 'pw-7d1c2b'] });
    servers.push(s);
    const url = `${s.url}/auth`;
    const refused = await runJourney(CLI, ['watch', ...REPLAY, '--export', url], null);
    expect(await refused.exited).toBe(15);
    expect(refused.stderr.join('\n')).toMatch(/E_EXPORT: nats:\/\/127\.0\.0\.1:\d+\/auth: .*(Authorization|AUTHORIZATION)/i);
    const inUrl = await runJourney(CLI, ['watch', ...REPLAY, '--export', `nats://journey:pw-7d1c2b@127.0.0.1:${s.port}/auth`], null);
    expect(await inUrl.exited).toBe(2);
    expect(inUrl.stderr.join('\n')).toMatch(/E_USAGE: nats:\/\/: no credentials in the URL/);
    expect(inUrl.stderr.join('\n')).not.toMatch(/pw-7d1c2b/);
    const r = await roundTrip(url, { JOURNEY_NATS_USER: 'journey', JOURNEY_NATS_PASSWORD: 'pw-7d1c2b' });
    expect(r.sent).toBeGreaterThan(10);
    expect(r.received).toBe(r.sent);
    const pwFile = join(dir, 'password');
    writeFileSync(pwFile, 'pw-7d1c2b\n', { mode: 0o600 });
    const f = await roundTrip(`${s.url}/auth2`, { JOURNEY_NATS_USER: 'journey', JOURNEY_NATS_PASSWORD_FILE: pwFile });
    expect(f.received).toBe(f.sent);
    console.log(`nats auth: ${r.sent} + ${f.sent} events through a user/password server`);
  });

  it('TLS: a TLS-only server reached with the CA from JOURNEY_NATS_TLS_CA', async () => {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
      ],
      { stdio: 'ignore' },
    );
    const s = await startNatsServer({ args: ['--tls', '--tlscert', cert, '--tlskey', key] });
    servers.push(s);
    const withoutCa = await runJourney(CLI, ['watch', ...REPLAY, '--export', `${s.url}/tls?tls=true`], null);
    expect(await withoutCa.exited).toBe(15); // a self-signed server is not trusted without its CA
    const r = await roundTrip(`${s.url}/tls`, { JOURNEY_NATS_TLS_CA: cert });
    expect(r.sent).toBeGreaterThan(10);
    expect(r.received).toBe(r.sent);
    console.log(`nats tls: ${r.sent} events through a TLS-only server`);
  });
});
