/**
 * Headless Chromium for the `journey serve` browser tests: Debian's chromium driven by
 * playwright-core (no downloaded browser), a fresh profile each time, nothing but loopback/lab.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

export interface BrowserHandle {
  readonly browser: Browser | BrowserContext;
  readonly context: BrowserContext;
  close(): Promise<void>;
}

/** Launches Debian's chromium headless with a throwaway profile. Fails loudly when it is missing. */
export async function launchChromium(): Promise<BrowserHandle> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run scripts/setup as root (apt-get install -y chromium)`);
  }
  const profile = mkdtempSync(join(tmpdir(), 'journey-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1400, height: 900 },
  });
  return {
    browser: context,
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
