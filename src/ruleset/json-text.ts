/** Reading untrusted JSON: a value of unknown shape, whether it is a plain object, and its text. */

/** A JSON value of unknown shape. */
export type J = unknown;

/** Whether a JSON value is an object (not an array, not null). */
export const isObj = (x: J): x is Record<string, J> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Text of a JSON value that never throws (String() throws on objects such as {"toString": false}). */
export function jsonText(x: unknown): string {
  if (typeof x === 'string') return x;
  if (typeof x === 'number' || typeof x === 'boolean' || x === null || x === undefined) return `${x}`;
  try {
    return JSON.stringify(x) ?? '';
  } catch {
    return '?';
  }
}
