/**
 * `journey verify <check>`: one command per registered check (src/verify/checks.ts), with the
 * common host options; exit status 0 only when the check's report is ok (E_VERIFY_FAILED -> 1).
 */
import type { Command } from 'commander';
import { JourneyError } from '../model/errors.js';
import { VERIFY_CHECKS, type AnyVerifyCheck } from '../verify/checks.js';

interface CommonCliOptions {
  netns?: string;
  dockerHost?: string;
  docker: boolean;
  json?: boolean;
  verbose?: boolean;
  plan?: boolean;
}

function registerCheck(verify: Command, check: AnyVerifyCheck): void {
  const cmd = verify
    .command(check.name)
    .description(check.description)
    .option('--netns <name>', 'network namespace of the Docker host (name, path or pid)')
    .option('--docker-host <url>', 'Docker Engine API (unix:///path/docker.sock or tcp://host:port; default $DOCKER_HOST)')
    .option('--no-docker', 'do not ask the Docker API: find containers and published ports on the host');
  for (const o of check.cliOptions) {
    if (o.default !== undefined) cmd.option(o.flags, o.description, o.default);
    else cmd.option(o.flags, o.description);
  }
  cmd
    .option('--plan', 'print what would be checked (JSON) and send nothing')
    .option('--json', 'print the report as JSON (docs/verify.md)')
    .option('-v, --verbose', 'show the evidence of passing checks too')
    .action(async (o: CommonCliOptions & Record<string, unknown>) => {
      const ac = new AbortController();
      const opts = check.fromCli(o, {
        ...(o.netns !== undefined ? { netns: o.netns } : {}),
        ...(o.dockerHost !== undefined ? { dockerHost: o.dockerHost } : {}),
        noDocker: !o.docker,
        signal: ac.signal,
        log: (m) => process.stderr.write(`journey: ${m}\n`),
      });
      if (check.needsRoot(o) && process.getuid?.() !== 0)
        throw new JourneyError('E_NOT_ROOT', `verify ${check.name} enters network namespaces and reads conntrack: run it as root`);
      if (o.plan === true) {
        process.stdout.write(`${JSON.stringify(await check.plan(opts), null, 2)}\n`);
        return;
      }
      const onSig = (): void => ac.abort();
      process.once('SIGINT', onSig);
      try {
        const report = await check.run(opts);
        process.stdout.write(o.json === true ? `${JSON.stringify(report, null, 2)}\n` : check.report(report, { verbose: o.verbose === true }));
        if (!report.ok) {
          const failed = check.failures(report);
          throw new JourneyError('E_VERIFY_FAILED', `${failed.length} ${check.name} check(s) failed: ${failed.join(', ')}`, { failed });
        }
      } finally {
        process.removeListener('SIGINT', onSig);
      }
    });
}

/** `journey verify <check>` for every registered check. */
export function registerVerify(program: Command): void {
  const verify = program.command('verify').description('verify a Docker host behaves as its configuration says it should');
  for (const check of VERIFY_CHECKS) registerCheck(verify, check);
}
