// The pure parts of drift detection: the on-host tree digest (run here through bash against real
// directories, as an SSH host would run it), the `current` description, and the rollback target.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { computeDigest } from '../../deployer/build/digest.ts';
import { manifestIsConsistent } from '../../deployer/drift/trust.ts';
import type { HistoryEntry } from '../../deployer/fleet/instance.ts';
import { decideRollbackTarget, type InstanceReleases } from '../../deployer/fleet/releases.ts';

const intendedRollbackTarget = (infos: InstanceReleases[], expected: string) => decideRollbackTarget(infos, expected).intended;
import * as cmd from '../../deployer/remote/commands.ts';
import { layoutOf } from '../../deployer/remote/layout.ts';
import { parseCurrentLink, parseHashTree, parseTreeDigest, splitSections } from '../../deployer/remote/parse.ts';

function sh(command: string): string {
  const r = spawnSync('bash', ['-c', command], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function releaseTree(): string {
  const dir = mkdtempSync(join(tmpdir(), 'drift tree '));
  mkdirSync(join(dir, 'bin'));
  mkdirSync(join(dir, 'public/é'), { recursive: true });
  writeFileSync(join(dir, 'bin/service'), '#!/bin/sh\n');
  chmodSync(join(dir, 'bin/service'), 0o755);
  writeFileSync(join(dir, 'public/é/a b.txt'), 'x');
  writeFileSync(join(dir, 'public/Z.txt'), '');
  writeFileSync(join(dir, 'manifest.json'), '{"not":"hashed"}');
  mkdirSync(join(dir, '..', `${dir.split('/').pop()}-shared`));
  symlinkSync(join(dir, '..', `${dir.split('/').pop()}-shared`), join(dir, 'data'));
  writeFileSync(join(dir, '..', `${dir.split('/').pop()}-shared`, 'user.csv'), 'outside the release');
  return dir;
}

describe('treeDigest (on-host digest of a release dir)', () => {
  it('equals computeDigest of the files hashTree finds (modes, spaces, UTF-8, shared symlinks and manifest.json excluded)', () => {
    const dir = releaseTree();
    const files = parseHashTree(sh(cmd.hashTree(dir)));
    expect(files.map((f) => f.path)).toEqual(['bin/service', 'public/Z.txt', 'public/é/a b.txt']);
    const quick = parseTreeDigest(sh(cmd.treeDigest(dir)));
    expect(quick.tree).toBe(computeDigest(files));
    expect(quick.manifestSha).toMatch(/^[0-9a-f]{64}$/);
  });

  it('changes when one byte, one mode or one file changes', () => {
    const dir = releaseTree();
    const before = parseTreeDigest(sh(cmd.treeDigest(dir))).tree;
    writeFileSync(join(dir, 'public/Z.txt'), 'y');
    const edited = parseTreeDigest(sh(cmd.treeDigest(dir))).tree;
    expect(edited).not.toBe(before);
    chmodSync(join(dir, 'public/Z.txt'), 0o755);
    const moded = parseTreeDigest(sh(cmd.treeDigest(dir))).tree;
    expect(moded).not.toBe(edited);
    writeFileSync(join(dir, 'public/stray'), '');
    expect(parseTreeDigest(sh(cmd.treeDigest(dir))).tree).not.toBe(moded);
  });

  it('says "manifest -" without a manifest, and exits 12 for a missing dir', () => {
    const dir = releaseTree();
    sh(`rm ${JSON.stringify(join(dir, 'manifest.json'))}`);
    expect(parseTreeDigest(sh(cmd.treeDigest(dir))).manifestSha).toBeNull();
    expect(spawnSync('bash', ['-c', cmd.treeDigest(join(dir, 'nope'))]).status).toBe(12);
  });
});

describe('describeCurrent', () => {
  it('tells a link to a release, a dangling link, a real directory and nothing apart', () => {
    const root = mkdtempSync(join(tmpdir(), 'drift-current-'));
    const layout = layoutOf(root);
    expect(parseCurrentLink(sh(cmd.describeCurrent(layout)))).toEqual({ kind: 'none', target: null, dir: false, manifest: false });
    mkdirSync(join(root, 'releases/20261130T0800Z-aaaaaaaa'), { recursive: true });
    writeFileSync(join(root, 'releases/20261130T0800Z-aaaaaaaa/manifest.json'), '{}');
    symlinkSync('releases/20261130T0800Z-aaaaaaaa', join(root, 'current'));
    expect(parseCurrentLink(sh(cmd.describeCurrent(layout)))).toEqual({ kind: 'link', target: 'releases/20261130T0800Z-aaaaaaaa', dir: true, manifest: true });
    sh(`rm -r ${JSON.stringify(join(root, 'releases'))}`);
    expect(parseCurrentLink(sh(cmd.describeCurrent(layout)))).toEqual({ kind: 'link', target: 'releases/20261130T0800Z-aaaaaaaa', dir: false, manifest: false });
    sh(`rm ${JSON.stringify(join(root, 'current'))} && mkdir ${JSON.stringify(join(root, 'current'))}`);
    expect(parseCurrentLink(sh(cmd.describeCurrent(layout)))).toEqual({ kind: 'notlink', target: null, dir: true, manifest: false });
  });
});

describe('inspectForDrift (one command per instance)', () => {
  it('reads current, releases, lock, history and the tree digest of current in one go', () => {
    const root = mkdtempSync(join(tmpdir(), 'drift-inspect-'));
    const layout = layoutOf(root);
    const id = '20261130T0800Z-aaaaaaaa';
    mkdirSync(join(root, 'releases', id), { recursive: true });
    mkdirSync(join(root, 'releases', '.staging-x'), { recursive: true });
    writeFileSync(join(root, 'releases', id, 'app.js'), 'x');
    symlinkSync(`releases/${id}`, join(root, 'current'));
    mkdirSync(join(root, '.lockstep/lock'), { recursive: true });
    writeFileSync(join(root, '.lockstep/lock/holder.json'), '{"user":"u","token":"secret"}\n');
    writeFileSync(join(root, '.lockstep/history.jsonl'), '{"event":"activate"}\n');
    const s = splitSections(sh(cmd.inspectForDrift(layout)));
    expect([...s.keys()]).toEqual(['current', 'releases', 'lock', 'history', 'tree']);
    expect(parseCurrentLink(s.get('current')!)).toMatchObject({ kind: 'link', target: `releases/${id}`, dir: true, manifest: false });
    expect(s.get('releases')!.split('\n').filter(Boolean)).toEqual([id]);
    expect(s.get('lock')).toContain('"user":"u"');
    expect(s.get('history')).toContain('"event":"activate"');
    expect(parseTreeDigest(s.get('tree')!).tree).toBe(computeDigest(parseHashTree(sh(cmd.hashTree(join(root, 'releases', id))))));
    // Without `current` there is no tree section, and the rest still comes back.
    sh(`rm ${JSON.stringify(join(root, 'current'))}`);
    const t = splitSections(sh(cmd.inspectForDrift(layout)));
    expect([...t.keys()]).toEqual(['current', 'releases', 'lock', 'history']);
  });
});

describe('decideRollbackTarget (the one rule for rollback, releases and drift)', () => {
  const h = (event: HistoryEntry['event'], release: string, previous: string | null, time: string): HistoryEntry => ({
    time,
    event,
    release,
    digest: 'd',
    previous,
    instance: 'i',
    user: 'u',
    machine: 'm',
  });
  const A = '20261130T0800Z-aaaaaaaa';
  const B = '20261130T0900Z-bbbbbbbb';
  const C = '20261130T1000Z-cccccccc';
  const info = (present: string[], history: HistoryEntry[], current: string): InstanceReleases => ({ instance: 'i', current, present, history });

  it('is the release before the expected one even where it is absent (that absence is the drift)', () => {
    const hist = [h('activate', A, null, '1'), h('activate', B, A, '2')];
    expect(intendedRollbackTarget([info([A, B], hist, B), info([B], hist, B)], B)).toBe(A);
  });

  it('skips a release the fleet was rolled back from, and is null when nothing is left', () => {
    const hist = [h('activate', A, null, '1'), h('activate', B, A, '2'), h('rollback', A, B, '3')];
    expect(intendedRollbackTarget([info([A, B], hist, A)], A)).toBeNull();
    const later = [...hist, h('activate', C, A, '4')];
    expect(intendedRollbackTarget([info([A, B, C], later, C)], C)).toBe(A);
  });

  it('gives rollback a target present everywhere, and drift the one that should be there', () => {
    const hist = [h('activate', A, null, '1'), h('activate', B, A, '2'), h('activate', C, B, '3')];
    // B is missing on the second instance: rollback goes to A, drift names B as missing.
    const d = decideRollbackTarget([info([A, B, C], hist, C), { ...info([A, C], hist, C), instance: 'j' }], C);
    expect(d).toEqual({ target: A, intended: B, candidates: [A] });
  });

  it('on a mixed fleet excludes every release an instance runs, for drift and rollback alike', () => {
    const hist = [h('activate', A, null, '1'), h('activate', B, A, '2'), h('activate', C, B, '3')];
    // One instance still runs B (a deploy stopped part-way): neither C nor B is a rollback target.
    const d = decideRollbackTarget([info([A, B, C], hist, C), { ...info([A, B, C], hist, B), instance: 'j' }], C);
    expect(d.target).toBe(A);
    expect(d.intended).toBe(A);
  });
});

describe('manifestIsConsistent', () => {
  it('accepts a manifest whose file list hashes to its digest, and nothing else', () => {
    const files = [{ path: 'a', size: 1, mode: '644', sha256: 'a'.repeat(64) }];
    const m = { release: '20261130T0800Z-aaaaaaaa', digest: computeDigest(files), files };
    expect(manifestIsConsistent(m, m.release)).toBe(true);
    expect(manifestIsConsistent(m, '20261130T0900Z-bbbbbbbb')).toBe(false);
    expect(manifestIsConsistent({ ...m, digest: 'f'.repeat(64) })).toBe(false);
    expect(manifestIsConsistent({ ...m, files: [{ ...files[0], sha256: 'nothex' }] })).toBe(false);
    expect(manifestIsConsistent(null)).toBe(false);
  });
});
