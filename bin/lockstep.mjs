#!/usr/bin/env node
// The lockstep CLI entry point: loads the TypeScript sources through tsx's loader,
// so a fresh clone runs after `npm ci` with no separate compile step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../deployer/cli/index.ts');
process.exitCode = await main(process.argv.slice(2));
