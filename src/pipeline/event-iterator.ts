/** The pipeline as an async iterable: a bounded queue per consumer, `lost` said in band. */
import type { EventEmitter } from 'node:events';
import { SCHEMA_VERSION, type JourneyEvent } from '../model/events.js';

export function iterateEvents(src: EventEmitter, nextSeq: () => number, max: number): AsyncIterator<JourneyEvent> {
  const queue: JourneyEvent[] = [];
  let lost = 0;
  let wake: (() => void) | null = null;
  let ended = false;
  const onEvent = (ev: JourneyEvent): void => {
    if (queue.length >= max) lost++;
    else queue.push(ev);
    wake?.();
  };
  const onEnd = (): void => {
    ended = true;
    wake?.();
  };
  src.on('event', onEvent);
  src.once('end', onEnd);
  const cleanup = (): void => {
    src.off('event', onEvent);
    src.off('end', onEnd);
  };
  return {
    next: async (): Promise<IteratorResult<JourneyEvent>> => {
      for (;;) {
        if (lost > 0) {
          const count = lost;
          lost = 0;
          return { value: { v: SCHEMA_VERSION, seq: nextSeq(), time: Date.now(), type: 'lost', count }, done: false };
        }
        const ev = queue.shift();
        if (ev) return { value: ev, done: false };
        if (ended) {
          cleanup();
          return { value: undefined, done: true };
        }
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = null;
      }
    },
    return: async (): Promise<IteratorResult<JourneyEvent>> => {
      cleanup();
      return { value: undefined, done: true };
    },
  };
}
