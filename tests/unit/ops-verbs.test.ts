// The host selection (--instances) and the merge of log lines by time (lockstep logs).
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/errors.ts';
import { selectInstances } from '../../deployer/fleet/selection.ts';
import { logLineTime, mergeLogLines } from '../../deployer/fleet/logs.ts';
import { logSince, logTail } from '../../deployer/remote/commands.ts';
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const inventory = { file: '/srv/inventory.yaml', instances: ['web-1', 'web-2', 'web-3', 'db-1'].map((name) => ({ name })) } as Parameters<typeof selectInstances>[0];

describe('selectInstances', () => {
  it('no selection is undefined (every instance)', () => {
    expect(selectInstances(inventory, undefined)).toBeUndefined();
    expect(selectInstances(inventory, [])).toBeUndefined();
  });
  it('names, comma lists, repeated options and globs resolve in inventory order, each once', () => {
    expect(selectInstances(inventory, 'web-3,web-1')).toEqual(['web-1', 'web-3']);
    expect(selectInstances(inventory, ['web-2', 'web-2,web-1'])).toEqual(['web-1', 'web-2']);
    expect(selectInstances(inventory, 'web-*')).toEqual(['web-1', 'web-2', 'web-3']);
    expect(selectInstances(inventory, 'web-[13],db-?')).toEqual(['web-1', 'web-3', 'db-1']);
    expect(selectInstances(inventory, '{db,web}-1')).toEqual(['web-1', 'db-1']);
  });
  it('an unknown name or a glob matching nothing is a usage error naming it and listing the instances', () => {
    const unknown = (() => { try { selectInstances(inventory, 'web-1,web-9'); } catch (e) { return e; } })() as ConfigError;
    expect(unknown).toBeInstanceOf(ConfigError);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.message).toContain('no instance named "web-9"');
    expect(unknown.message).toContain('web-1, web-2, web-3, db-1');
    expect(() => selectInstances(inventory, 'cache-*')).toThrow(/the pattern "cache-\*" matches no instance .*its instances are: web-1, web-2, web-3, db-1/);
    // A name is never matched as a prefix.
    expect(() => selectInstances(inventory, 'web')).toThrow(/no instance named "web"/);
  });
});

describe('log lines merged by time', () => {
  it('reads pino ms times, ISO times, and nothing from other text', () => {
    expect(logLineTime('{"level":30,"time":1765000000123,"msg":"ready"}')).toBe(1765000000123);
    expect(logLineTime('{"time":"2026-12-07T10:00:00.500Z"}')).toBe(Date.parse('2026-12-07T10:00:00.500Z'));
    expect(logLineTime('2026-12-07T10:00:01Z started')).toBe(Date.parse('2026-12-07T10:00:01Z'));
    expect(logLineTime('    at main (index.mjs:3:1)')).toBeNull();
    expect(logLineTime('{not json')).toBeNull();
  });
  it('interleaves instances by time; an untimed line stays after the line before it', () => {
    const j = (t: number, msg: string) => JSON.stringify({ time: t, msg });
    const { merged, last } = mergeLogLines([
      { instance: 'web-1', lines: [j(2, 'a2'), j(5, 'a5'), 'Error: boom', '  at x'] },
      { instance: 'web-2', lines: [j(1, 'b1'), j(5, 'b5'), j(6, 'b6')] },
      { instance: 'web-3', lines: ['untimed first', j(3, 'c3')], carry: null },
    ]);
    expect(merged.map((l) => `${l.instance}:${l.line.includes('msg') ? (JSON.parse(l.line) as { msg: string }).msg : l.line}`)).toEqual([
      'web-3:untimed first', 'web-2:b1', 'web-1:a2', 'web-3:c3', 'web-1:a5', 'web-1:Error: boom', 'web-1:  at x', 'web-2:b5', 'web-2:b6',
    ]);
    expect(last.get('web-1')).toBe(5);
    expect(last.get('web-2')).toBe(6);
  });
});

describe('log reading commands (run by bash on this machine)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-logs-'));
  const file = join(dir, 'app.log');
  const sh = (script: string) => spawnSync('bash', ['-c', script], { encoding: 'utf8' }).stdout;
  it('logTail: inode, size and the last N lines of those bytes; a missing file is `- 0`', () => {
    expect(sh(logTail(file, 2))).toBe('- 0\n');
    writeFileSync(file, 'one\ntwo\nthree\n');
    const [head, ...rest] = sh(logTail(file, 2)).split('\n');
    expect(head).toMatch(/^\d+ 14$/);
    expect(rest.join('\n')).toBe('two\nthree\n');
  });
  it('logSince: the bytes after the offset; from 0 after truncation or replacement', () => {
    const inode = sh(logTail(file, 0)).split(' ')[0]!;
    appendFileSync(file, 'four\n');
    expect(sh(logSince(file, inode, 14, 1 << 20))).toBe(`${inode} 19\n14\nfour\n`);
    expect(sh(logSince(file, inode, 14, 2))).toBe(`${inode} 19\n14\nfo`);
    writeFileSync(file, 'new\n'); // truncated: smaller than the offset
    expect(sh(logSince(file, inode, 19, 1 << 20))).toMatch(/^\d+ 4\n0\nnew\n$/);
    expect(sh(logSince(file, 'other-inode', 2, 1 << 20))).toMatch(/^\d+ 4\n0\nnew\n$/);
  });
});

describe('the proxy access log', () => {
  it('one JSON line per sampled request, path without its query, written by close at the latest', async () => {
    const { AccessLog } = await import('../../proxy/access-log.ts');
    const { readFileSync } = await import('node:fs');
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-access-'));
    const all = new AccessLog({ path: join(dir, 'sub', 'all.log'), sampleRate: 1 });
    const tenth = new AccessLog({ path: join(dir, 'tenth.log'), sampleRate: 0.1 });
    for (let i = 0; i < 30; i++) {
      all.record('GET', `/api/x/${i}?token=secret`, 200, 'web-1', 1.234, `id-${i}`);
      tenth.record('POST', '/api/upload', 502, '-', 10, undefined);
    }
    await Promise.all([all.close(), tenth.close()]);
    const lines = readFileSync(join(dir, 'sub', 'all.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(30);
    expect(lines[3]).toEqual({ time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), method: 'GET', path: '/api/x/3', status: 200, instance: 'web-1', duration_ms: 1.2, request_id: 'id-3' });
    expect(readFileSync(join(dir, 'sub', 'all.log'), 'utf8')).not.toContain('secret');
    const sampled = readFileSync(join(dir, 'tenth.log'), 'utf8').trimEnd().split('\n');
    expect(sampled).toHaveLength(3);
    expect(JSON.parse(sampled[0]!)).toMatchObject({ method: 'POST', status: 502, instance: '-', request_id: null });
  });
});
