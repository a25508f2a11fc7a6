import type { Command } from 'commander';
import { missingCapabilities } from '../host/privilege.js';
import { spawn } from 'node:child_process';
import { JourneyError } from '../model/errors.js';
import { run } from '../host/exec.js';
import type { KernelTrace, TraceStep } from '../netfilter/kernel-trace.js';
import {
  labUp,
  labDown,
  labStatus,
  labExec,
  listProbes,
  listScenarios,
  runProbe,
  traceKernel,
  whereToNetns,
  type LabInfo,
  type ProbeResult,
} from '../../lab/driver.js';

interface IdOpt {
  id?: string;
}

const out = (s: string): void => {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
};

/** Human summary of a lab: namespaces, bridges, containers, published ports. */
export function formatLab(info: LabInfo): string {
  const lines: string[] = [];
  lines.push(`lab ${info.id || '(no id)'}: scenario ${info.scenario}${info.ruleset ? ` (${info.ruleset})` : ''}  dir ${info.dir}`);
  lines.push(
    `  namespaces  host ${info.netns.host} (eth0 ${info.hostAddr}, default via ${info.extAddr})  ext ${info.netns.ext} (${info.extAddr}, outside ${info.outsideAddr})  ext2 ${info.netns.ext2} (${info.ext2Addr})`,
  );
  if (info.v6) lines.push(`  ipv6        host ${info.v6.hostAddr}  ext ${info.v6.extAddr}  ext2 ${info.v6.ext2Addr}  outside ${info.v6.outsideAddr}`);
  lines.push(
    `  engine      ${info.dockerHost ? `dockerd unix://${info.dockerHost}` : 'none (replay)'}  userland-proxy=${info.daemon.userlandProxy} icc=${info.daemon.icc} iptables=${info.daemon.iptables}${info.firewalld ? '  firewalld' : ''}`,
  );
  for (const b of info.bridges) {
    lines.push(
      `  bridge      ${b.name.padEnd(14)} ${b.subnet.padEnd(16)} gw ${b.gateway.padEnd(14)} network ${b.network}${b.internal ? ' (internal)' : ''}${b.subnet6 ? `  ${b.subnet6} gw ${b.gateway6 ?? '?'}` : ''}`,
    );
  }
  for (const c of info.containers) {
    const pub = c.published
      .map(
        (p) =>
          `${p.hostIp === '0.0.0.0' || p.hostIp === '::' ? '' : p.hostIp.includes(':') ? `[${p.hostIp}]:` : `${p.hostIp}:`}${p.hostPort}->${p.containerPort}/${p.proto}`,
      )
      .join(', ');
    lines.push(
      `  container   ${c.name.padEnd(14)} ${c.ip.padEnd(16)} on ${c.bridge.padEnd(12)} pid ${String(c.pid).padEnd(8)} ${pub}${c.ip6 ? `  ${c.ip6}` : ''}`,
    );
  }
  return lines.join('\n');
}

export function formatProbe(r: ProbeResult): string {
  const to = `${r.to.addr}${r.to.port !== undefined ? `:${r.to.port}` : ''}/${r.proto}`;
  const mark = r.asExpected ? 'ok  ' : 'FAIL';
  return `${mark} ${r.name.padEnd(26)} ${r.from.where}(${r.from.addr}) -> ${to.padEnd(24)} ${r.outcome.padEnd(9)} expected ${r.expect.padEnd(9)} ${r.durationMs} ms  ${r.output.split('\n')[0]?.slice(0, 60) ?? ''}`;
}

function formatStep(s: TraceStep): string {
  const where = `${s.family} ${s.table} ${s.chain}`;
  const num = s.ruleNumber !== null ? `#${s.ruleNumber}` : s.handle !== null ? `h${s.handle}` : '';
  const rule = s.rule ? `  ${s.rule.replace(/counter packets \d+ bytes \d+ ?/, '')}` : '';
  return `    ${(s.hook ?? '?').padEnd(11)} ${where.padEnd(40)} ${num.padEnd(4)} ${s.verdict.padEnd(30)}${rule}`;
}

export function formatTrace(t: KernelTrace): string {
  const lines: string[] = [];
  for (const p of t.packets) {
    const h = p.first;
    const hdr = h
      ? `${h.proto ?? '?'} ${h.saddr ?? '?'}${h.sport !== undefined ? `:${h.sport}` : ''} -> ${h.daddr ?? '?'}${h.dport !== undefined ? `:${h.dport}` : ''}${h.tcpFlags ? ` [${h.tcpFlags}]` : ''}${h.icmpType ? ` ${h.icmpType}` : ''} iif ${h.iif ?? '-'}`
      : '(no header)';
    lines.push(`packet ${p.index} (trace ${p.traceIds.join(',')}): ${hdr}  => ${p.final ?? 'no verdict'}${p.dropped ? ' DROPPED' : ''}`);
    for (const s of p.steps) lines.push(formatStep(s));
  }
  lines.push(`conntrack (${t.conntrack.length} entries):`);
  for (const c of t.conntrack) {
    lines.push(
      `    ${c.orig.proto} ${c.orig.src}:${c.orig.sport} -> ${c.orig.dst}:${c.orig.dport}  reply ${c.reply.src}:${c.reply.sport} -> ${c.reply.dst}:${c.reply.dport}  ${c.tcpState ?? ''} ${c.status.filter((x) => x.endsWith('NAT')).join(' ')}`,
    );
  }
  if (t.skipped.length) lines.push(`(${t.skipped.length} unreadable trace lines skipped)`);
  return lines.join('\n');
}

/** Runs a command with inherited stdio (for `lab trace -- CMD`), resolving its exit status. */
function runInherit(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.resolve(0);
  return new Promise((resolve, reject) => {
    // stdout of CMD goes to stderr so that stdout stays the trace (data)
    const child = spawn(cmd, args, { stdio: ['ignore', process.stderr, 'inherit'] });
    child.on('error', (e) => reject(new JourneyError('E_TOOL_FAILED', `${cmd}: ${e.message}`)));
    child.on('close', (code) => resolve(code ?? 128));
  });
}

export function registerLab(program: Command): void {
  const lab = program
    .command('lab')
    .description('a Docker host in network namespaces with a real dockerd: up, down, status, exec, traffic, trace')
    .enablePositionalOptions()
    .addHelpText(
      'after',
      `\nScenarios:\n${listScenarios()
        .map((s) => `  ${s.name.padEnd(10)} ${s.description}`)
        .join('\n')}\n\nLab ids (--id or JOURNEY_LAB_ID) let several labs coexist; every name a lab makes starts with jl-.`,
    );

  lab
    .command('up')
    .description('bring a lab up: a scenario with a real dockerd, or --ruleset FILE replayed without one')
    .option('--id <id>', 'lab id (namespaces jl-<id>-host, jl-<id>-ext, jl-<id>-ext2)')
    .option('--scenario <name>', 'scenario recipe under lab/scenarios/', 'default')
    .option('--ruleset <file>', 'replay an iptables-save or nft ruleset (Docker 28/29 goldens) instead of running dockerd')
    .option('--json', 'print the LabInfo JSON')
    .option('--no-rules', 'do not print the resulting ruleset')
    .action(async (o: IdOpt & { scenario: string; ruleset?: string; json?: boolean; rules: boolean }) => {
      const info = await labUp({
        ...(o.id !== undefined ? { id: o.id } : {}),
        scenario: o.scenario,
        ...(o.ruleset !== undefined ? { ruleset: o.ruleset } : {}),
      });
      if (o.json) return out(JSON.stringify(info, null, 2));
      out(formatLab(info));
      if (o.rules) {
        const rules =
          info.rulesetFormat === 'nft'
            ? await run(['nft', 'list', 'ruleset'], { netns: info.netns.host, allowFailure: true })
            : await run(['iptables-save'], { netns: info.netns.host, allowFailure: true });
        out(
          `\nrules in ${info.netns.host}:\n${rules.stdout
            .split('\n')
            .filter((l) => l && !l.startsWith('#'))
            .join('\n')}`,
        );
      }
      out(
        `\nprobes: ${listProbes(info.scenario, info)
          .map((p) => p.name)
          .join(' ')}\n(journey lab traffic${info.id ? ` --id ${info.id}` : ''} NAME; journey lab down${info.id ? ` --id ${info.id}` : ''})`,
      );
    });

  lab
    .command('down')
    .description('remove everything a lab made (idempotent, works after a crash)')
    .option('--id <id>', 'lab id')
    .option('--all', 'remove every jl-* lab on this machine')
    .action(async (o: IdOpt & { all?: boolean }) => {
      await labDown(o.all ? '*' : o.id);
      process.stderr.write('lab: down\n');
    });

  lab
    .command('status')
    .description('describe a running lab (namespaces, bridges, containers, published ports)')
    .option('--id <id>', 'lab id')
    .option('--json', 'print the LabInfo JSON (null when no lab is up)')
    .action(async (o: IdOpt & { json?: boolean }) => {
      const info = await labStatus(o.id, { refresh: true });
      if (o.json) return out(JSON.stringify(info, null, 2));
      if (!info) {
        process.stderr.write(`lab: no lab is up${o.id ? ` with id ${o.id}` : ''}\n`);
        process.exitCode = 1;
        return;
      }
      out(formatLab(info));
    });

  lab
    .command('exec')
    .description('run a command in the lab: WHERE is host, ext, ext2 or a container name')
    .argument('<where>')
    .argument('<cmd...>')
    .option('--id <id>', 'lab id')
    .option('--mnt', "in a container: also enter its mount namespace (use the container's own binaries)")
    .passThroughOptions()
    .action(async (where: string, cmd0: string[], o: IdOpt & { mnt?: boolean }) => {
      // entering the lab's namespaces needs CAP_SYS_ADMIN: say so, not nsenter's raw EPERM
      if (missingCapabilities(['CAP_SYS_ADMIN']).length > 0) {
        throw new JourneyError(
          'E_NOT_ROOT',
          `lab exec enters the lab's network namespaces: run it as root (uid ${process.geteuid?.() ?? -1} lacks CAP_SYS_ADMIN)`,
        );
      }
      // `lab exec WHERE -- CMD`: the separator is ours, not the command's
      const cmd = cmd0[0] === '--' ? cmd0.slice(1) : cmd0;
      if (cmd.length === 0) throw new JourneyError('E_USAGE', 'lab exec: give a command (lab exec WHERE -- CMD ...)');
      const res = await labExec(o.id, where, cmd, { allowFailure: true, timeoutMs: 600_000, ...(o.mnt ? { mount: true } : {}) });
      process.stdout.write(res.stdout);
      process.stderr.write(res.stderr);
      process.exitCode = res.code;
    });

  lab
    .command('traffic')
    .description('run standard probes (all of them without NAME), bounded in time')
    .argument('[names...]')
    .option('--id <id>', 'lab id')
    .option('--list', 'list the probes of the running lab')
    .option('--json', 'print ProbeResult JSON (one array)')
    .action(async (names: string[], o: IdOpt & { list?: boolean; json?: boolean }) => {
      const info = await labStatus(o.id);
      if (!info) throw new JourneyError('E_NO_NETNS', `no lab is up${o.id ? ` with id ${o.id}` : ''}: run 'journey lab up' first`);
      const probes = listProbes(info.scenario, info);
      if (o.list) {
        if (o.json) return out(JSON.stringify(probes, null, 2));
        return out(
          probes
            .map(
              (p) =>
                `${p.name.padEnd(26)} ${p.from} -> ${p.to}${p.port !== undefined ? `:${p.port}` : ''}/${p.proto}  expect ${p.expect}  ${p.description}`,
            )
            .join('\n'),
        );
      }
      const chosen = names.length ? names : probes.map((p) => p.name);
      const results: ProbeResult[] = [];
      for (const name of chosen) {
        const r = await runProbe(o.id, name);
        results.push(r);
        if (!o.json) out(formatProbe(r));
      }
      if (o.json) out(JSON.stringify(results, null, 2));
      if (results.some((r) => !r.asExpected)) process.exitCode = 1;
    });

  lab
    .command('trace')
    .description("run CMD (or a probe) while recording the kernel's nft trace and the conntrack table")
    .argument('[cmd...]', 'command to run (after --); its output goes to stderr')
    .option('--id <id>', 'lab id')
    .option('--in <where>', 'run CMD inside the lab: host, ext, ext2 or a container')
    .option('--probe <name>', 'trace one of the lab probes instead of CMD')
    .option('--filter <nft-match>', "trace only packets matching this nft expression, e.g. 'tcp dport 8000'")
    .option('--json', 'print the KernelTrace JSON')
    .option('--text', 'include the raw trace text in the JSON')
    .action(async (cmd: string[], o: IdOpt & { in?: string; probe?: string; filter?: string; json?: boolean; text?: boolean }) => {
      if (!o.probe && cmd.length === 0) throw new JourneyError('E_USAGE', 'lab trace: give a command after -- or --probe NAME');
      const info = await labStatus(o.id);
      if (!info) throw new JourneyError('E_NO_NETNS', `no lab is up${o.id ? ` with id ${o.id}` : ''}`);
      let status = 0;
      const action = async (): Promise<unknown> => {
        if (o.probe) {
          const r = await runProbe(o.id, o.probe);
          process.stderr.write(`${formatProbe(r)}\n`);
          return r;
        }
        const argv = o.in
          ? [
              'nsenter',
              `--net=${typeof whereToNetns(info, o.in) === 'number' ? `/proc/${whereToNetns(info, o.in)}/ns/net` : `/var/run/netns/${whereToNetns(info, o.in)}`}`,
              '--',
              ...cmd,
            ]
          : cmd;
        status = await runInherit(argv);
        return { exitCode: status };
      };
      const t = await traceKernel(o.id, action, o.filter ? { filter: o.filter } : {});
      if (o.json) {
        const { text, ...rest } = t;
        out(JSON.stringify(o.text ? t : rest, null, 2));
        void text;
      } else out(formatTrace(t));
      if (status !== 0) process.exitCode = status;
    });
}
