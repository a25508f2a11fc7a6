#!/usr/bin/env node
/**
 * `journey verify exposure` throughput: rows decided per second on (a) a Docker 20.10 host (the lab's
 * recorded ruleset) with 100 published ports — 100 DNAT rules, 100 per-port ACCEPTs, 100 containers —
 * and (b) the same host with 10,000 extra rules in DOCKER-USER (non-matching, on every forwarded
 * path). The reference, measured in the same run on the same compiled ruleset: the simulator's bare
 * rate (explainPacket of one row's packet, repeated). The ratio says what the row logic (planning,
 * the DNAT-less explanation for the firewall never consulted, the words) costs on top of the
 * simulation itself. Needs the build (npm run build); no root.
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const d = (p) => import(join(root, 'dist/src', p));
const { parseIptablesSave } = await d('ruleset/iptables-save.js');
const { makeHostContext, parseIpAddr, parseIpRoute } = await d('ruleset/host-context.js');
const { compileRuleset } = await d('netfilter/compile.js');
const { explainPacket } = await d('explain/explain.js');
const { exposureRows } = await d('verify/verify-exposure.js');

const W = join(root, 'test/fixtures/watch/default');
const host = makeHostContext(parseIpAddr(readFileSync(join(W, 'addrs.json'), 'utf8')), parseIpRoute(readFileSync(join(W, 'routes.json'), 'utf8')));
const base = readFileSync(join(W, 'iptables-save.txt'), 'utf8');
const PORTS = 100;

/** The lab's ruleset with PORTS published ports (and `extra` non-matching DOCKER-USER rules). */
function ruleset(extra) {
  const dnat = [];
  const accept = [];
  for (let i = 0; i < PORTS; i++) {
    const ip = `172.17.${1 + (i >> 8)}.${(i & 255) + 2}`;
    dnat.push(`-A DOCKER ! -i docker0 -p tcp -m tcp --dport ${9000 + i} -j DNAT --to-destination ${ip}:80`);
    accept.push(`-A DOCKER -d ${ip}/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT`);
  }
  const user = [];
  for (let i = 0; i < extra; i++)
    user.push(`-A DOCKER-USER -s 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32 -p udp -m udp --dport ${1000 + (i % 60000)} -j DROP`);
  return base
    .replace('-A DOCKER-USER -j RETURN', [...user, '-A DOCKER-USER -j RETURN'].join('\n'))
    .replace(/^(-A DOCKER -d 172\.17\.0\.2\/32.*)$/m, `$1\n${accept.join('\n')}`)
    .replace(/^(-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8000 .*)$/m, `$1\n${dnat.join('\n')}`);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function measure(label, extra) {
  const rules = parseIptablesSave(ruleset(extra), { source: label });
  const inp = { rules, context: host, docker: null, netns: null };
  const rowsRate = [];
  const simRate = [];
  let nRows = 0;
  const compiled = compileRuleset(rules, host);
  const spec = { tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '203.0.113.7', dst: '10.0.10.26', sport: 40000, dport: 9050 }, iif: 'eth0' };
  for (let round = 0; round < 5; round++) {
    const t0 = process.hrtime.bigint();
    const { rows } = exposureRows(inp);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    nRows = rows.length;
    rowsRate.push(rows.length / s);
    const n = Math.max(200, rows.length);
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) explainPacket(compiled, spec);
    simRate.push(n / (Number(process.hrtime.bigint() - t1) / 1e9));
  }
  const r = median(rowsRate);
  const ref = median(simRate);
  console.log(
    `${label}: ${nRows} rows, ${r.toFixed(0)} rows/s (whole check, compile included) vs the simulator's bare ${ref.toFixed(0)} packets/s on the same ruleset: ratio ${(r / ref).toFixed(3)}`,
  );
  return { label, rows: nRows, rowsPerSecond: r, simPacketsPerSecond: ref, ratio: r / ref };
}

console.log(
  `load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
const out = [measure(`${PORTS} published ports`, 0), measure(`${PORTS} published ports + 10,000 DOCKER-USER rules`, 10_000)];
if (process.argv.includes('--json')) console.log(JSON.stringify(out));
