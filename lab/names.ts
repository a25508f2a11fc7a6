/** The names one lab uses, derived from its id (mirrors `set_names` in lab/lab.sh). */
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { JourneyError } from '../src/model/errors.js';

/** The lab's fixed topology (lab.sh builds the same): the host's uplink and the addresses around it. */
export const LAB_TOPOLOGY = {
  uplink: 'eth0',
  hostAddr: '10.0.10.26',
  extAddr: '10.0.10.5',
  ext2Addr: '10.0.10.6',
  outsideAddr: '198.51.100.10',
} as const;

/** The IPv6 layer of the topology (lab.sh topology6): ULA on the uplink, a documentation prefix outside. */
export const LAB_TOPOLOGY6 = {
  hostAddr: 'fd00:10::26',
  extAddr: 'fd00:10::5',
  ext2Addr: 'fd00:10::6',
  outsideAddr: '2001:db8:ff::10',
} as const;

export interface LabNames {
  readonly id: string;
  readonly prefix: string;
  readonly dir: string;
  readonly netns: { readonly host: string; readonly ext: string; readonly ext2: string };
  readonly dockerSock: string;
  readonly cgroupParent: string;
}

/** The directory holding lab.sh, probe-tool.mjs and scenarios/ (works from src and from dist). */
export function labSourceDir(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  // dist/lab -> ../../lab
  if (d.endsWith(join('dist', 'lab'))) d = join(d, '..', '..', 'lab');
  return d;
}

export function resolveId(id?: string): string {
  const v = id ?? process.env['JOURNEY_LAB_ID'] ?? '';
  if (v !== '' && !/^[a-z0-9][a-z0-9_]{0,11}$/.test(v)) {
    throw new JourneyError('E_USAGE', `lab id must be [a-z0-9_], at most 12 characters: ${v}`);
  }
  return v;
}

export function labNames(id?: string): LabNames {
  const v = resolveId(id);
  const prefix = v ? `jl-${v}-` : 'jl-';
  const dir = v ? `/tmp/jl-${v}-lab` : '/tmp/jl-lab';
  return {
    id: v,
    prefix,
    dir,
    netns: { host: `${prefix}host`, ext: `${prefix}ext`, ext2: `${prefix}ext2` },
    dockerSock: `${dir}/docker.sock`,
    cgroupParent: v ? `jl-${v}` : 'jl-lab',
  };
}
