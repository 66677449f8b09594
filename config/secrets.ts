/**
 * The proxy's two secrets, the admin token and the affinity-cookie key: taken from an environment
 * variable when set, else from a file that is created on first use (32 random bytes, hex, mode 0600).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from './errors.ts';

/** Where a secret came from, for messages (never the secret itself). */
export interface SecretSource {
  value: string;
  from: 'env' | 'file' | 'created';
  /** The env var name or the file path. */
  where: string;
}

/**
 * Read a secret file.
 * @returns the trimmed content, or undefined when the file does not exist.
 * @throws ConfigError when it exists but is unreadable or shorter than 16 characters.
 */
export function readSecretFile(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot read secret file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { file });
  }
  const value = text.trim();
  if (value.length < 16) throw new ConfigError(`secret file ${file} holds fewer than 16 characters; delete it to have a new one generated`, { file });
  return value;
}

/**
 * Resolve a secret: the env var when set and non-empty, else the file, created when missing
 * (parent directories too) with a fresh 32-byte hex value and mode 0600.
 * @throws ConfigError when the env value is shorter than 16 characters or the file cannot be read/written.
 */
export function resolveSecret(envName: string, file: string, env: NodeJS.ProcessEnv = process.env): SecretSource {
  const fromEnv = env[envName];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (fromEnv.length < 16) throw new ConfigError(`environment variable ${envName} must hold at least 16 characters`);
    return { value: fromEnv, from: 'env', where: envName };
  }
  const existing = readSecretFile(file);
  if (existing !== undefined) return { value: existing, from: 'file', where: file };
  const value = randomBytes(32).toString('hex');
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    // 'wx' fails when another process created it meanwhile: then use theirs.
    writeFileSync(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      const raced = readSecretFile(file);
      if (raced !== undefined) return { value: raced, from: 'file', where: file };
    }
    throw new ConfigError(`cannot create secret file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { file });
  }
  return { value, from: 'created', where: file };
}
