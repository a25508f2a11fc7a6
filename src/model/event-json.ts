/**
 * The JSON text of one event, as every output sends it (JSON lines, WebSocket clients, NATS). A
 * flow's explanation is most of its events (~5 of 6.5 KB on the recorded Docker host) and stays
 * the same object across the flow's flow.start, flow.update and flow.end until the flow is
 * explained again, so its text is made once per explanation object and put in place of a null:
 * a flow event costs about half as much after its first. An Explanation is readonly throughout
 * (a new explanation is a new object), which is what makes the cached text right. The text equals
 * JSON.stringify(ev); explaining a flow again compares the texts (correlate/flow-events.ts).
 *
 * Only the texts of the last TEXTS explanations are kept: a flow's start and the updates of its
 * first moments share one, a flow.end long after makes it again. Kept for the flow's life, the
 * text was two thirds of what a live explained flow holds (~14 of ~20 KB with both directions: a
 * "→" in a meaning makes the whole text two bytes a character): 100,000 long-lived connections
 * would have kept 1.4 GB of text.
 */
import type { Explanation } from './explanation.js';
import type { JourneyEvent } from './events.js';

/** Texts kept, the oldest made first forgotten. */
const TEXTS = 64;
const explanationText = new Map<Explanation, string>();
/** The flow's explanation when it is null: no key before it in a flow event is named so. */
const HOLE = '"explanation":null';
const HOLE_VALUE_AT = HOLE.length - 'null'.length;

/** JSON.stringify(ex), made once per explanation object. */
export function explanationJson(ex: Explanation): string {
  let text = explanationText.get(ex);
  if (text === undefined) {
    text = JSON.stringify(ex);
    if (explanationText.size >= TEXTS) explanationText.delete(explanationText.keys().next().value as Explanation);
    explanationText.set(ex, text);
  }
  return text;
}

export function eventJson(ev: JourneyEvent): string {
  if (ev.type !== 'flow.start' && ev.type !== 'flow.update' && ev.type !== 'flow.end') return JSON.stringify(ev);
  const ex = ev.flow.explanation;
  if (ex === null) return JSON.stringify(ev);
  const text = explanationJson(ex);
  // the same keys in the same order, the explanation left null; a string value cannot hold HOLE
  // (its quotes are escaped), so the first one is the flow's
  const rest = JSON.stringify({ ...ev, flow: { ...ev.flow, explanation: null } });
  const at = rest.indexOf(HOLE);
  return `${rest.slice(0, at + HOLE_VALUE_AT)}${text}${rest.slice(at + HOLE.length)}`;
}
