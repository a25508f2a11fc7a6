import { defineConfig } from 'vitest/config';

// Two projects: `unit` (no root, no network; fixtures and recorded captures) and `lab`
// (root: network namespaces, a real dockerd, the kernel's trace). Lab files run one at a time.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          root: new URL('..', import.meta.url).pathname,
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'lab',
          root: new URL('..', import.meta.url).pathname,
          include: ['test/lab/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 240_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
