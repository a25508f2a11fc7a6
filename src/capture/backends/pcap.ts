/**
 * `pcap`: node-pcap (libpcap TPACKET_V3 with a block timeout), a JavaScript callback per packet.
 * The fallback of `native`.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { linkTypeFromName } from '../batch.js';
import type { CaptureBackendDef, WorkerConfig, WorkerSink } from './shape.js';

const require = createRequire(import.meta.url);

interface PcapBinding {
  open_live(
    dev: string,
    filter: string,
    bufferSize: number,
    snaplen: number,
    outfile: string,
    onPacket: () => void,
    monitor: boolean,
    timeoutMs: number,
    warn: (w: string) => void,
    promisc: boolean,
  ): string;
  dispatch(buf: Buffer, hdr: Buffer): number;
  start_polling(): void;
  close(): void;
  stats(): { ps_recv: number; ps_drop: number; ps_ifdrop: number };
  read_callback?: () => void;
}

export const pcapBackend: CaptureBackendDef<'pcap'> = {
  name: 'pcap',
  label: 'node-pcap',
  description: 'node-pcap: libpcap with a JavaScript callback per packet',
  kernelStats: true,
  open(cfg: WorkerConfig, sink: WorkerSink) {
    const pcapDir = dirname(require.resolve('pcap/package.json'));
    const binding = require(join(pcapDir, 'build/Release/pcap_binding.node')) as { PcapSession: new () => PcapBinding };
    const s = new binding.PcapSession();
    const buf = Buffer.alloc(cfg.snaplen);
    const hdrBuf = Buffer.alloc(16);
    const hdr = new Uint32Array(hdrBuf.buffer, hdrBuf.byteOffset, 4);
    const onPacket = (): void => {
      sink.add(buf, hdr[2] as number, hdr[3] as number, (hdr[0] as number) * 1e6 + (hdr[1] as number));
    };
    const warnings: string[] = [];
    const linkName = s.open_live(
      cfg.iface,
      cfg.filter,
      cfg.bufferSize,
      cfg.snaplen,
      '',
      onPacket,
      false,
      cfg.bufferTimeoutMs,
      (w: string) => warnings.push(w),
      cfg.promiscuous,
    );
    let failed = false;
    s.read_callback = () => {
      const r = s.dispatch(buf, hdrBuf);
      sink.flush();
      if (r < 0 && !failed) {
        failed = true;
        sink.fail('read', `capture on ${cfg.iface} stopped: the interface went down or disappeared`, 3);
      }
    };
    s.start_polling();
    return {
      linkType: linkTypeFromName(linkName),
      // the block being filled is handed over only when it retires (buffer timeout)
      stopDelayMs: cfg.bufferTimeoutMs + 30,
      drain() {
        if (!failed) s.dispatch(buf, hdrBuf);
      },
      stats() {
        const st = s.stats();
        return { psRecv: st.ps_recv >>> 0, drop: st.ps_drop >>> 0, ifdrop: st.ps_ifdrop >>> 0 };
      },
      close() {
        try {
          s.close();
        } catch {
          // already closed (the interface vanished): nothing left to release
        }
      },
    };
  },
};
