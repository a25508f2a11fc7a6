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
