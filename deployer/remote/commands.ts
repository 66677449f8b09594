/**
 * Pure builders of remote commands (Kamal's `commands/` style): each returns the exact shell
 * text to run on an instance and runs nothing. The instance operations decide when to run them.
 * Commands need a POSIX shell and GNU coreutils/findutils/tar on the instance.
 */
import type { Layout } from './layout.ts';
import { artifactPath, releaseDir } from './layout.ts';
import { buildScript, shq } from '../transport/shell.ts';
import { MANIFEST_FILE } from '../build/manifest.ts';

/** Checks the tools the other commands rely on; prints the `current` target (empty if none). */
export function preflight(layout: Layout): string {
  return [
    'set -e',
    'for t in tar gzip sha256sum find mkdir mv ln readlink; do command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 10; }; done',
    // The nearest existing ancestor of deploy_to must be writable, or mkdir -p will fail later.
    `d=${shq(layout.root)}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done`,
    '[ -w "$d" ] || { echo "not writable: $d" >&2; exit 11; }',
    `readlink ${shq(layout.current)} 2>/dev/null || true`,
  ].join('\n');
}

/** Creates the layout's directories and the shared directories. */
export function prepareLayout(layout: Layout, sharedDirs: string[]): string {
  const dirs = [layout.releases, layout.artifacts, layout.meta, layout.shared, ...sharedDirs.map((d) => `${layout.shared}/${d}`)];
  return `mkdir -p ${dirs.map(shq).join(' ')}`;
}

/** Prints the sha256 of the artifact for `digest` if present, nothing otherwise. */
export function artifactHash(layout: Layout, digest: string): string {
  const p = shq(artifactPath(layout, digest));
  return `if [ -f ${p} ]; then sha256sum ${p} | cut -d' ' -f1; fi`;
}

/** Temp upload name of an artifact (renamed into place only after its hash is verified). */
export function artifactUploadPath(layout: Layout, digest: string): string {
  return `${artifactPath(layout, digest)}.part`;
}

/** Prints the sha256 of the uploaded temp file. */
export function uploadedHash(layout: Layout, digest: string): string {
  return `sha256sum ${shq(artifactUploadPath(layout, digest))} | cut -d' ' -f1`;
}

/** Moves a verified upload into place. */
export function commitUpload(layout: Layout, digest: string): string {
  return `mv -f ${shq(artifactUploadPath(layout, digest))} ${shq(artifactPath(layout, digest))}`;
}

/** Removes a rejected upload. */
export function discardUpload(layout: Layout, digest: string): string {
  return `rm -f ${shq(artifactUploadPath(layout, digest))}`;
}

/** Staging directory for unpacking a release; hidden so no tool mistakes it for a release. */
export function stagingDir(layout: Layout, id: string): string {
  releaseDir(layout, id);
  return `${layout.releases}/.staging-${id}`;
}

/**
 * Unpacks the artifact of `digest` into a fresh staging directory for release `id`. File modes
 * are taken from the archive as they are (`--same-permissions`), whatever the deploy user's
 * umask: GNU tar applies the umask for a non-root user otherwise, and a 644 file unpacked under
 * umask 027 becomes 640 and fails verification against the manifest.
 */
export function unpackToStaging(layout: Layout, id: string, digest: string): string {
  const staging = shq(stagingDir(layout, id));
  return `set -e; rm -rf ${staging}; mkdir -p ${staging}; tar -xzf ${shq(artifactPath(layout, digest))} -C ${staging} --no-same-owner --same-permissions`;
}

/**
 * Lists every regular file under `dir` (excluding the release's own manifest.json and anything
 * behind a symlink, i.e. shared dirs) in two sections split by a `--` line: first
 * `<path>\t<size bytes>\t<octal mode>` lines, then `sha256sum` lines (`<hex>  ./<path>`).
 * One find pass and one batched sha256sum (xargs), so a 1,000-file release costs a handful of
 * processes; hashing happens on the instance and nothing is downloaded. Parse with `parseHashTree`.
 */
export function hashTree(dir: string): string {
  const find = `find . -type f ! -path ./${MANIFEST_FILE}`;
  return `cd ${shq(dir)} || exit 12\n${find} -printf '%P\\t%s\\t%m\\n' && echo -- && ${find} -print0 | xargs -0 -r sha256sum`;
}

/** Writes the manifest into the staging dir, then moves staging to its final release name. */
export function commitRelease(layout: Layout, id: string): string {
  const staging = shq(stagingDir(layout, id));
  const dir = shq(releaseDir(layout, id));
  // A release dir that already exists was re-verified by the caller and failed: keep it aside.
  return [
    'set -e',
    `if [ -e ${dir} ]; then mv ${dir} ${shq(`${layout.releases}/.rejected-${id}`)}-$(date +%s); fi`,
    `mv ${staging} ${dir}`,
  ].join('\n');
}

/** Path of the manifest inside a directory. */
export function manifestPathIn(dir: string): string {
  return `${dir}/${MANIFEST_FILE}`;
}

/** Removes the staging dir of `id` (after a failed verification). */
export function discardStaging(layout: Layout, id: string): string {
  return `rm -rf ${shq(stagingDir(layout, id))}`;
}

/** True (exit 0) when the release dir exists. */
export function releaseExists(layout: Layout, id: string): string {
  return `test -d ${shq(releaseDir(layout, id))}`;
}

/**
 * Links each shared dir into the release: releases/<id>/<dir> -> <deploy_to>/shared/<dir>
 * (a nested dir such as `public/uploads` gets its parent created in the release first).
 * @throws Error for a shared dir that is empty, absolute or has a `.`/`..` segment (the
 *   inventory schema refuses them; checked again here because the result runs `rm -rf`).
 */
export function linkShared(layout: Layout, id: string, sharedDirs: string[]): string {
  const dir = releaseDir(layout, id);
  if (sharedDirs.length === 0) return 'true';
  return sharedDirs
    .map((d) => {
      if (!isPlainRelativePath(d)) throw new Error(`not a plain relative shared dir: ${JSON.stringify(d)}`);
      const parent = d.includes('/') ? `mkdir -p ${shq(`${dir}/${d.slice(0, d.lastIndexOf('/'))}`)} && ` : '';
      return `${parent}rm -rf ${shq(`${dir}/${d}`)} && ln -s ${shq(`${layout.shared}/${d}`)} ${shq(`${dir}/${d}`)}`;
    })
    .join(' && ');
}

/** True for a relative path of plain segments: no empty, `.` or `..` segment, no leading `/`. */
export function isPlainRelativePath(p: string): boolean {
  return p.length > 0 && !p.startsWith('/') && p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

/**
 * Switches `current` to release `id` atomically: a new symlink under a temp name, then
 * rename(2) over the old one (`mv -T`), so `current` is never missing or half-written.
 */
export function switchCurrent(layout: Layout, id: string): string {
  releaseDir(layout, id);
  // `$$` stays outside the quotes so the shell expands it: one temp name per switching process.
  const tmp = `${shq(`${layout.root}/.current-`)}$$`;
  return `ln -sfn ${shq(`releases/${id}`)} ${tmp} && mv -Tf ${tmp} ${shq(layout.current)}`;
}

/** Prints where `current` points (relative link target), empty when there is no `current`. */
export function readCurrent(layout: Layout): string {
  return `readlink ${shq(layout.current)} 2>/dev/null || true`;
}

/**
 * Runs one of the app's service commands in `current` with the app-contract environment
 * EXPORTED first, so the command may be any shell text the operator writes (`a; b`,
 * `if ...; then ...; fi; b`, pipes): every command in it sees the environment.
 * @throws Error for an environment name that is not a shell identifier.
 */
export function serviceCommand(layout: Layout, command: string, env: Record<string, string>): string {
  return buildScript(command, { cwd: layout.current, env });
}

/** Appends one JSON line to the instance's history (O_APPEND: concurrent writers do not interleave lines). */
export function appendHistory(layout: Layout, entry: Record<string, unknown>): string {
  return `mkdir -p ${shq(layout.meta)} && printf '%s\\n' ${shq(JSON.stringify(entry))} >> ${shq(layout.history)}`;
}

/** Prints the history file (empty when none). */
export function readHistory(layout: Layout): string {
  return `cat ${shq(layout.history)} 2>/dev/null || true`;
}

/** Lists release dirs (names only, one per line). */
export function listReleases(layout: Layout): string {
  return `ls -1 ${shq(layout.releases)} 2>/dev/null | grep -E '^[0-9]{8}T[0-9]{4}Z-[0-9a-f]{8}$' || true`;
}

/**
 * Takes the deploy lock atomically: the holder's details are written into a private temp dir
 * that is then renamed to the lock dir (rename(2) fails when the lock dir exists and is not
 * empty), so a lock is never visible without its holder file. Exit 20 means the lock is held;
 * the holder's details are printed.
 */
export function acquireLock(layout: Layout, holder: Record<string, unknown>): string {
  const lock = shq(layout.lock);
  const tmp = `${shq(layout.meta)}/.lock-$$`;
  return [
    `mkdir -p ${shq(layout.meta)} && rm -rf ${tmp} && mkdir ${tmp}`,
    `printf '%s\\n' ${shq(JSON.stringify(holder))} > ${tmp}/holder.json`,
    `if mv -T ${tmp} ${lock} 2>/dev/null; then exit 0; fi`,
    `rm -rf ${tmp}; cat ${lock}/holder.json 2>/dev/null || echo '{}'; exit 20`,
  ].join('\n');
}

/**
 * Refreshes the lock's heartbeat (owner token must match): the holder file is rewritten through
 * a temp file and rename, so readers never see it half-written.
 */
export function refreshLock(layout: Layout, holder: Record<string, unknown>): string {
  const file = shq(`${layout.lock}/holder.json`);
  const tmp = shq(`${layout.lock}/.holder.json.tmp`);
  return `if grep -q ${shq(`"token":"${String(holder.token)}"`)} ${file} 2>/dev/null; then printf '%s\\n' ${shq(JSON.stringify(holder))} > ${tmp} && mv -f ${tmp} ${file}; fi`;
}

/** Releases the lock only when its owner token matches (a deploy never removes someone else's lock). */
export function releaseLock(layout: Layout, token: string): string {
  const lock = shq(layout.lock);
  return `if [ -d ${lock} ] && grep -q ${shq(`"token":"${token}"`)} ${lock}/holder.json 2>/dev/null; then rm -rf ${lock}; fi`;
}

/** Removes the lock whoever holds it: only for `lock release --force` on a lock judged stale. */
export function breakLock(layout: Layout): string {
  return `rm -rf ${shq(layout.lock)}`;
}

/**
 * Describes `current` without following it blindly, for drift detection. Prints one line
 * `link\t<target>` (a symlink), `notlink` (a real file or directory) or `none`, then `dir` when
 * it resolves to a directory and `manifest` when that directory holds a manifest.json.
 * Parse with `parseCurrentLink`.
 */
export function describeCurrent(layout: Layout): string {
  const c = shq(layout.current);
  return [
    `if [ -L ${c} ]; then printf 'link\\t%s\\n' "$(readlink ${c})"; elif [ -e ${c} ]; then echo notlink; else echo none; fi`,
    `if [ -d ${c} ]; then echo dir; fi`,
    `if [ -f ${shq(manifestPathIn(layout.current))} ]; then echo manifest; fi`,
    'true',
  ].join('\n');
}

/** Prints the deploy lock's holder.json: nothing when the lock is free, `{}` when it is held without one. */
export function readLockHolder(layout: Layout): string {
  return `if [ -d ${shq(layout.lock)} ]; then cat ${shq(`${layout.lock}/holder.json`)} 2>/dev/null || echo '{}'; fi; true`;
}

/**
 * Prints two lines for the release directory `dir`: `tree <digest>`, the release digest of the
 * files found there (computed ON the host exactly as `computeDigest` does: `<sha256> <mode>
 * <size> <path>` per regular file, sorted by path bytes, manifest.json and anything behind a
 * symlink excluded, then sha256), and `manifest <sha256 of manifest.json>` (`-` when absent).
 * A clean release costs two short lines instead of a per-file listing; when the tree digest
 * differs, `hashTree` names the files. Exit 12 when `dir` cannot be entered.
 */
export function treeDigest(dir: string): string {
  const find = `find . -type f ! -path ./${MANIFEST_FILE}`;
  // Stat lines and hash lines meet in awk, keyed by path; sort puts them in byte order.
  const awk = `awk -F '\\t' '$1=="S"{size[$2]=$3;mode[$2]=$4;next} {h=substr($0,3,64); p=substr($0,71); hash[p]=h} END{for(p in size) printf "%s\\t%s %s %s %s\\n", p, hash[p], mode[p], size[p], p}'`;
  return [
    `cd ${shq(dir)} || exit 12`,
    'export LC_ALL=C',
    `t=$( { ${find} -printf 'S\\t%P\\t%s\\t%m\\n'; ${find} -print0 | xargs -0 -r sha256sum | sed 's/^/H\\t/'; } | ${awk} | sort -t "$(printf '\\t')" -k1,1 | cut -f2- | sha256sum | cut -c1-64 )`,
    'echo "tree $t"',
    `if [ -f ${MANIFEST_FILE} ]; then echo "manifest $(sha256sum ${MANIFEST_FILE} | cut -c1-64)"; else echo 'manifest -'; fi`,
  ].join('\n');
}

/** Prints the sha256 of `<dir>/manifest.json`, or nothing when it is absent. */
export function manifestHash(dir: string): string {
  const p = shq(manifestPathIn(dir));
  return `if [ -f ${p} ]; then sha256sum ${p} | cut -c1-64; fi`;
}

/**
 * Everything a drift scan reads from one instance, in one command (one round trip, one shell):
 * sections `##current` (describeCurrent), `##releases` (listReleases), `##lock`
 * (readLockHolder), `##history` (readHistory) and, when `current` resolves to a directory,
 * `##tree` (treeDigest of it). Split with `splitSections`.
 */
export function inspectForDrift(layout: Layout): string {
  return [
    'echo "##current"',
    `( ${describeCurrent(layout)} )`,
    'echo "##releases"',
    `( ${listReleases(layout)} )`,
    'echo "##lock"',
    `( ${readLockHolder(layout)} )`,
    'echo "##history"',
    `( ${readHistory(layout)} )`,
    `if [ -d ${shq(layout.current)} ]; then echo "##tree"; ( ${treeDigest(layout.current)} ); fi`,
    'true',
  ].join('\n');
}

/**
 * Finds (with `-print`) and runs `action` on the leftovers of killed or failed deploys: partial
 * uploads (`artifacts/*.part`, `artifacts/*.tmp-*`), staging dirs of failed unpacks
 * (`releases/.staging-*`) and temp `current` links (`.current-*`).
 */
function leftovers(layout: Layout, action: string): string {
  return [
    `find ${shq(layout.artifacts)} -mindepth 1 -maxdepth 1 \\( -name '*.part' -o -name '*.tmp-*' \\) -print ${action} 2>/dev/null`,
    `find ${shq(layout.releases)} -mindepth 1 -maxdepth 1 -name '.staging-*' -print ${action} 2>/dev/null`,
    `find ${shq(layout.root)} -mindepth 1 -maxdepth 1 -type l -name '.current-*' -print ${action} 2>/dev/null`,
    'true',
  ].join('\n');
}

/**
 * Removes the leftovers of killed or failed deploys (see `leftovers`) and prints each removed
 * path on its own line. Run only under the deploy lock: a running deploy's upload or unpack is
 * exactly such a file while it is in progress.
 */
export function removeLeftovers(layout: Layout): string {
  return leftovers(layout, '-exec rm -rf {} +');
}

/**
 * Reads what the free-space preflight needs, changing nothing. Prints four lines:
 * `free <bytes available to this user on deploy_to's filesystem>` (its nearest existing
 * ancestor when deploy_to does not exist yet), `leftovers <bytes held by removeLeftovers'
 * targets>`, `artifact <bytes of artifacts/<digest>.tar.gz, or ->` and `release yes|no`
 * (releases/<id> exists). Parse with `parseDiskSpace`.
 */
export function diskSpace(layout: Layout, id: string, digest: string): string {
  const artifact = shq(artifactPath(layout, digest));
  return [
    `d=${shq(layout.root)}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done`,
    `echo "free $(df -P -B1 "$d" | awk 'NR==2{print $4}')"`,
    `echo "leftovers $( ( ${leftovers(layout, '-prune')} ) | tr '\\n' '\\0' | xargs -0 -r du -s -B1 -- 2>/dev/null | awk '{s+=$1} END{print s+0}')"`,
    `if [ -f ${artifact} ]; then echo "artifact $(stat -c %s ${artifact})"; else echo 'artifact -'; fi`,
    `if [ -d ${shq(releaseDir(layout, id))} ]; then echo 'release yes'; else echo 'release no'; fi`,
  ].join('\n');
}

/**
 * `lockstep exec`: runs the operator's `command` (bash text, not quoted: it is meant as shell) in
 * `current`; exit 127 with one line on stderr when there is no `current` to enter.
 */
export function execInCurrent(layout: Layout, command: string): string {
  return `cd -- ${shq(layout.current)} 2>/dev/null || { echo ${shq(`lockstep exec: no current release at ${layout.current}`)} >&2; exit 127; }\n${command}`;
}

/** The app's log file on an instance: `app.log` in LOG_DIR (`<deploy_to>/shared/logs`), where app/bin/service sends the app's output. */
export function appLogPath(layout: Layout): string {
  return `${layout.shared}/logs/app.log`;
}

/**
 * `lockstep logs`: prints `<inode> <size>` of `file` (`- 0` when absent), then the last `lines`
 * lines of its first `<size>` bytes, so the caller knows exactly where following must start.
 */
export function logTail(file: string, lines: number): string {
  const f = shq(file);
  return `set -- $(stat -c '%i %s' ${f} 2>/dev/null || echo '- 0'); echo "$1 $2"; if [ "$2" -gt 0 ]; then head -c "$2" ${f} | tail -n ${Math.max(0, Math.floor(lines))}; fi; true`;
}

/**
 * `lockstep logs -f`: prints `<inode> <size>` of `file`, then the bytes from `offset` to that
 * size (at most `maxBytes`), or from 0 when the file was replaced (another inode) or truncated
 * (smaller than `offset`): what `tail -F` would show since the last poll.
 */
export function logSince(file: string, inode: string, offset: number, maxBytes: number): string {
  const f = shq(file);
  const off = Math.max(0, Math.floor(offset));
  return [
    `set -- $(stat -c '%i %s' ${f} 2>/dev/null || echo '- 0'); echo "$1 $2"`,
    `off=${off}; if [ "$1" != ${shq(inode)} ] || [ "$2" -lt "$off" ]; then off=0; fi`,
    `n=$(( $2 - off )); if [ "$n" -gt ${Math.floor(maxBytes)} ]; then n=${Math.floor(maxBytes)}; fi`,
    `echo "$off"; if [ "$n" -gt 0 ]; then tail -c +$((off + 1)) ${f} | head -c "$n"; fi; true`,
  ].join('\n');
}
