/**
 * Records a kernel-trace fixture from a running lab, for the unit tests of the trace parser:
 *   node dist/lab/tools/record-trace-fixture.js --id a --probe NAME --out test/fixtures/kernel-trace/NAME
 * writes NAME.trace.txt (nft -a monitor trace), NAME.ruleset.json (nft -a -j list ruleset),
 * NAME.iptables-save.txt, NAME.conntrack.txt and NAME.probe.json.
 */
import { writeFileSync } from 'node:fs';
import { runProbe, traceKernel } from '../driver.js';
import { JourneyError } from '../../src/model/errors.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const id = opt('id');
const probe = opt('probe');
const outBase = opt('out');
if (!probe || !outBase) throw new JourneyError('E_USAGE', 'usage: record-trace-fixture --id ID --probe NAME --out PATH-PREFIX [--filter EXPR]');
const filter = opt('filter');
const t = await traceKernel(id, () => runProbe(id, probe), { keepRaw: true, ...(filter ? { filter } : {}) });
if (!t.raw) throw new JourneyError('E_INTERNAL', 'no raw texts');
writeFileSync(`${outBase}.trace.txt`, t.text);
writeFileSync(`${outBase}.ruleset.json`, t.raw.rulesetJson);
writeFileSync(`${outBase}.iptables-save.txt`, t.raw.iptablesSave);
writeFileSync(`${outBase}.conntrack.txt`, t.raw.conntrackText);
writeFileSync(`${outBase}.probe.json`, `${JSON.stringify(t.actionResult, null, 2)}\n`);
process.stderr.write(`recorded ${outBase}.* (${t.packets.length} packets, ${t.steps.length} steps)\n`);
