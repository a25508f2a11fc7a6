/**
 * Prometheus metrics of the exports of `journey serve --export …` and of `serve --from`'s reader,
 * on the server's own registry (/metrics), read from the targets' counters at each scrape.
 */
import { Gauge, type Registry } from 'prom-client';
import type { ExportStats } from './target.js';
import type { FleetStats } from './nats-fleet.js';

/** journey_export_{sent,lost,reconnects}{target} from `stats()` of every export target. */
export function registerExportMetrics(registry: Registry, stats: () => readonly ExportStats[]): void {
  const gauge = (name: string, help: string, pick: (s: ExportStats) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['target'],
      registers: [registry],
      collect() {
        for (const s of stats()) this.set({ target: s.target }, pick(s));
      },
    });
  };
  gauge('journey_export_sent', 'Units an export target handed to its engine (IPFIX data records, NATS messages acknowledged)', (s) => s.sent);
  gauge('journey_export_lost', 'Units an export target could not send (counted, never silent)', (s) => s.lost);
  gauge('journey_export_reconnects', 'Transport sessions an export target re-established', (s) => s.reconnects);
}

/** journey_fleet_{events,skipped,reconnects,hosts} of `serve --from`. */
export function registerFleetMetrics(registry: Registry, stats: () => FleetStats): void {
  const gauge = (name: string, help: string, pick: (s: FleetStats) => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(pick(stats()));
      },
    });
  };
  gauge('journey_fleet_events', 'Events read from the message engine (serve --from)', (s) => s.received);
  gauge('journey_fleet_skipped', 'Messages that were not events of this schema version (serve --from), skipped', (s) => s.skipped);
  gauge('journey_fleet_reconnects', 'Reconnects to the message engine (serve --from)', (s) => s.reconnects);
  gauge('journey_fleet_hosts', 'Hosts seen (serve --from)', (s) => s.hosts.length);
}
