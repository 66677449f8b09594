// TEMP (lead): replaced by the transport branch.
import { spawn } from 'node:child_process';
import { copyFile, readFile, rename } from 'node:fs/promises';
import type { ExecOptions, ExecResult, Transport } from './types.ts';
export class LocalTransport implements Transport {
  constructor(readonly instance: string) {}
  async connect() {}
  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    return new Promise((res) => {
      const child = spawn('bash', ['-c', command], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = ''; let stderr = '';
      child.stdout.on('data', (d) => (stdout += d)); child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code, signal) => res({ code, signal, stdout, stderr }));
    });
  }
  async putFile(l: string, r: string) { await copyFile(l, r + '.tmp'); await rename(r + '.tmp', r); }
  async readFile(p: string) { return readFile(p, 'utf8'); }
  async close() {}
}
