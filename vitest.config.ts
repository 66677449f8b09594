import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // End-to-end tests start real sshd hosts, proxies and app processes: give them room,
    // but no test asserts on time.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Two cores: run files in at most two forks so real servers are not starved.
    pool: 'forks',
    maxWorkers: 2,
    globalSetup: ['tests/helpers/global-setup.ts'],
  },
});
