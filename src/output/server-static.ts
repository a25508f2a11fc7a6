/**
 * The web page's files (plain HTML/CSS/JS in src/output/web/, no build step), read from the
 * source tree: tsc does not copy them into dist/, so they are looked up relative to this module
 * both from src/output/ (tests run the TypeScript) and from dist/src/output/ (the built CLI).
 * Only the files listed in WEB_FILES are ever served (no path from the request touches the disk).
 */
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const WEB_FILES: Readonly<Record<string, string>> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/app.js': 'app.js',
  '/journey-view.js': 'journey-view.js',
  '/verify-view.js': 'verify-view.js',
  '/style.css': 'style.css',
};

const TYPES: Readonly<Record<string, string>> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  json: 'application/schema+json',
};

export interface StaticFile {
  readonly body: Buffer;
  readonly type: string;
}

function candidates(rel: string): string[] {
  return [
    fileURLToPath(new URL(`./${rel}`, import.meta.url)), // src/output/ (ts run directly)
    fileURLToPath(new URL(`../../../src/output/${rel}`, import.meta.url)), // dist/src/output/
  ];
}

function findDir(rel: string, probe: string): string | null {
  for (const c of candidates(rel)) if (existsSync(c + probe)) return c;
  return null;
}

/** Where the page's files were looked for (for the error message when they are missing). */
export function webDirCandidates(): string[] {
  return candidates('web/');
}

/** Loads the page's files once (at server start); null when this installation lacks them. */
export function loadWebFiles(): Map<string, StaticFile> | null {
  const dir = findDir('web/', 'index.html');
  if (dir === null) return null;
  const out = new Map<string, StaticFile>();
  for (const [path, name] of Object.entries(WEB_FILES)) {
    const ext = name.slice(name.lastIndexOf('.') + 1);
    out.set(path, { body: readFileSync(dir + name), type: TYPES[ext] ?? 'application/octet-stream' });
  }
  return out;
}

/** The published JSON Schema (docs/event-schema.json), or null when not shipped. */
export function loadEventSchema(): StaticFile | null {
  for (const c of [
    fileURLToPath(new URL('../../docs/event-schema.json', import.meta.url)),
    fileURLToPath(new URL('../../../docs/event-schema.json', import.meta.url)),
  ]) {
    if (existsSync(c)) return { body: readFileSync(c), type: TYPES['json'] ?? 'application/json' };
  }
  return null;
}
