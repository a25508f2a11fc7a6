import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ToolConntrackSource } from '../../src/conntrack/tool-source.js';
import type { ConntrackEvent } from '../../src/model/conntrack.js';
import { JourneyError } from '../../src/model/errors.js';

// A stand-in for the conntrack binary (no root, no kernel): -L lists one entry on the first dump
// and two afterwards; -E prints one event, then conntrack-tools' own ENOBUFS warning on stderr.
const A =
  'ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.10.5 dst=10.0.10.26 sport=40000 dport=8000 src=172.17.0.2 dst=10.0.10.5 sport=80 dport=40000 [ASSURED] mark=0 use=1 id=11';
const B =
  'ipv4     2 udp      17 29 src=172.17.0.2 dst=10.0.10.5 sport=5353 dport=53 src=10.0.10.5 dst=10.0.10.26 sport=53 dport=5353 mark=0 use=1 id=22';
const EV =
  '[1795407369.445107]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=10.77.0.1 dst=10.77.0.2 sport=43120 dport=9000 [UNREPLIED] src=10.77.0.2 dst=10.77.0.1 sport=9001 dport=43120 id=33';

function fakeConntrack(dir: string): string {
  const bin = join(dir, 'conntrack');
  writeFileSync(
    bin,
    `#!/bin/sh
case "$1" in
-L)
  [ "$3" = ipv4 ] || exit 0
  n=$(cat "${dir}/lists" 2>/dev/null || echo 0); echo $((n + 1)) > "${dir}/lists"
  echo '${A}'
  [ "$n" -gt 0 ] && echo '${B}'
  exit 0 ;;
-E)
  echo '${EV}'
  sleep 0.2
  echo 'WARNING: We have hit ENOBUFS! We are losing events.' >&2
  echo 'This message means that the current netlink socket buffer size is too small.' >&2
  exec sleep 30 ;;
esac
exit 1
`,
  );
  chmodSync(bin, 0o755);
  return bin;
}

describe('conntrack tool source: ENOBUFS', () => {
  it('reports the overflow through onError (E_CONNTRACK) and re-lists: the missed entry arrives as an event', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jct-'));
    const src = new ToolConntrackSource({ binary: fakeConntrack(dir), batchMs: 5 });
    try {
      const dump = await src.dump();
      expect(dump.map((e) => e.id)).toEqual(['11']);
      const events: ConntrackEvent[] = [];
      const errors: Error[] = [];
      await src.start(
        (evs) => events.push(...evs),
        (e) => errors.push(e),
      );
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline && !events.some((e) => e.entry.id === '22')) await new Promise((r) => setTimeout(r, 20));
      expect(errors).toHaveLength(1);
      const err = errors[0] as JourneyError;
      expect(err).toBeInstanceOf(JourneyError);
      expect(err.code).toBe('E_CONNTRACK');
      expect(err.message).toMatch(/ENOBUFS.*events were lost.*resync 1/);
      expect(src.resyncs).toBe(1);
      // the event before the overflow, then the entry the re-list found
      expect(events.find((e) => e.entry.id === '33')?.type).toBe('new');
      expect(events.find((e) => e.entry.id === '22')).toMatchObject({ type: 'new', entry: { orig: { src: '172.17.0.2', dport: 53 } } });
    } finally {
      await src.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
