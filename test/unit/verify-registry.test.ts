/**
 * The verify check registry (src/verify/checks.ts) is the one place a check is declared: every
 * registered check is a `journey verify <name>` command, a WebSocket verify request the server
 * validates (and docs/event-schema.json publishes), and a section of docs/verify.md. The hairpin
 * paths are one table (src/verify/hairpin-paths.ts) keyed by the one list of their names.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { registerVerify } from '../../src/cli/verify.js';
import { CLIENT_MESSAGE_SCHEMA, parseClientMessage } from '../../src/output/subscription.js';
import { VERIFY_CHECK_NAMES, VERIFY_CHECKS, verifyCheck } from '../../src/verify/checks.js';
import { HAIRPIN_PATHS } from '../../src/verify/hairpin-paths.js';
import { HAIRPIN_PATH_KINDS } from '../../src/verify/types.js';

const ROOT = new URL('../..', import.meta.url).pathname;

describe('verify check registry', () => {
  it('lists each check once, by a name the registry resolves', () => {
    expect(VERIFY_CHECKS.length).toBeGreaterThan(0);
    expect(new Set(VERIFY_CHECK_NAMES).size).toBe(VERIFY_CHECKS.length);
    for (const c of VERIFY_CHECKS) {
      expect(c.name).toMatch(/^[a-z][a-z-]*$/);
      expect(verifyCheck(c.name)).toBe(c);
      for (const k of ['plan', 'run', 'report', 'failures', 'fromCli', 'fromWire', 'needsRoot'] as const)
        expect(typeof c[k], `${c.name}.${k}`).toBe('function');
    }
    expect(verifyCheck('nope')).toBeUndefined();
  });

  it('makes every check a `journey verify <name>` command with the common host options and its own', () => {
    const program = new Command();
    registerVerify(program);
    const verify = program.commands.find((c) => c.name() === 'verify');
    expect(verify?.commands.map((c) => c.name())).toEqual([...VERIFY_CHECK_NAMES]);
    for (const check of VERIFY_CHECKS) {
      const cmd = verify?.commands.find((c) => c.name() === check.name);
      const flags = cmd?.options.map((o) => o.flags) ?? [];
      for (const common of ['--netns <name>', '--docker-host <url>', '--no-docker', '--json', '--plan']) expect(flags, check.name).toContain(common);
      for (const o of check.cliOptions) expect(flags, check.name).toContain(o.flags);
    }
  });

  it('accepts a verify request for every check, with its own options schema, and nothing else', () => {
    const ajv = new Ajv2020({ strict: true });
    for (const check of VERIFY_CHECKS) {
      expect(() => ajv.compile(check.wireSchema), check.name).not.toThrow();
      expect(parseClientMessage(JSON.stringify({ type: 'verify', check: check.name, id: 'x' }), 4096).ok, check.name).toBe(true);
      expect(parseClientMessage(JSON.stringify({ type: 'verify', check: check.name, options: { netns: '/proc/1/ns/net' } }), 4096).ok).toBe(false);
    }
    expect(parseClientMessage('{"type":"verify","check":"nope"}', 4096).ok).toBe(false);
    const branches = CLIENT_MESSAGE_SCHEMA.oneOf.filter((b) => (b.properties as { type?: { const?: string } }).type?.const === 'verify');
    expect(branches.map((b) => (b.properties as unknown as { check: { const: string } }).check.const)).toEqual([...VERIFY_CHECK_NAMES]);
    const doc = JSON.parse(readFileSync(`${ROOT}docs/event-schema.json`, 'utf8')) as {
      $defs: { VerifyRequest: { oneOf: { properties: { check: { const: string } } }[] } };
    };
    expect(doc.$defs.VerifyRequest.oneOf.map((b) => b.properties.check.const)).toEqual([...VERIFY_CHECK_NAMES]);
  });

  it('documents every check in docs/verify.md', () => {
    const md = readFileSync(`${ROOT}docs/verify.md`, 'utf8');
    for (const c of VERIFY_CHECKS) expect(md).toContain(`journey verify ${c.name}`);
  });

  it('keys the hairpin path table by the one list of path names', () => {
    expect(Object.keys(HAIRPIN_PATHS).sort()).toEqual([...HAIRPIN_PATH_KINDS].sort());
    for (const k of HAIRPIN_PATH_KINDS) expect(HAIRPIN_PATHS[k].kind).toBe(k);
  });
});
