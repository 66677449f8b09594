/**
 * Reading an uploaded zip safely, in memory (nothing is extracted to disk), with yauzl.
 * Refused: a file that is not a zip, an entry whose path would escape the directory it is
 * unpacked into (absolute, drive letter, `..` segment, either slash), more than MAX_ENTRIES
 * entries, and a total uncompressed size past the limit (checked on the declared sizes first,
 * then on the bytes actually inflated, so a lying header cannot get past it).
 */
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { AppError } from './errors.ts';

/** Entries accepted in one zip (a shapefile has 3 to 8 parts). */
export const MAX_ENTRIES = 1000;

export interface ZipContent {
  /** Entry path as stored (`/`-separated) -> bytes. Directory entries are left out. */
  files: Map<string, Buffer>;
}

/** True when `name` would escape the directory a zip is extracted into. */
export function escapesDirectory(name: string): boolean {
  const normalized = name.replace(/\\/g, '/');
  if (normalized.startsWith('/') || /^[a-zA-Z]:/.test(normalized)) return true;
  return normalized.split('/').includes('..');
}

function open(buf: Buffer): Promise<ZipFile> {
  return new Promise((resolve, reject) => {
    // decodeStrings false: yauzl would reject unsafe names with a generic error; we name them ourselves.
    yauzl.fromBuffer(buf, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true }, (err, zip) =>
      err ? reject(err) : resolve(zip),
    );
  });
}

function readEntry(zip: ZipFile, entry: Entry, budget: { left: number }, limit: number, file: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => {
      if (err) return reject(err);
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        budget.left -= chunk.length;
        if (budget.left < 0) {
          stream.destroy();
          reject(new AppError(413, 'ZIP_TOO_LARGE', `${file} expands past the limit of ${limit} bytes (ZIP_MAX_BYTES)`, { file }));
          return;
        }
        chunks.push(chunk);
      });
      stream.on('error', reject);
      stream.on('end', () => resolve(Buffer.concat(chunks)));
    });
  });
}

/**
 * Read every file of a zip into memory.
 * @param buf the zip's bytes. @param file its name (for messages). @param maxBytes limit on the
 *   total uncompressed size, bytes.
 * @throws AppError 400 NOT_ZIP / ZIP_INVALID, 400 ZIP_UNSAFE_PATH (file = the entry's path),
 *   413 ZIP_TOO_LARGE / ZIP_TOO_MANY_ENTRIES.
 */
export async function readZip(buf: Buffer, file: string, maxBytes: number): Promise<ZipContent> {
  let zip: ZipFile;
  try {
    zip = await open(buf);
  } catch {
    throw new AppError(400, 'NOT_ZIP', `${file} is not a zip archive; zip the .shp, .shx, .dbf and .prj files together`, { file });
  }
  if (zip.entryCount > MAX_ENTRIES) {
    zip.close();
    throw new AppError(413, 'ZIP_TOO_MANY_ENTRIES', `${file} has ${zip.entryCount} entries (at most ${MAX_ENTRIES})`, { file });
  }
  const files = new Map<string, Buffer>();
  const budget = { left: maxBytes };
  try {
    await new Promise<void>((resolve, reject) => {
      let declared = 0;
      zip.on('error', (err: Error) =>
        reject(err instanceof AppError ? err : new AppError(400, 'ZIP_INVALID', `${file} is a damaged zip: ${err.message}`, { file })),
      );
      zip.on('end', () => resolve());
      zip.on('entry', (entry: Entry) => {
        const raw = entry.fileName as unknown as Buffer;
        const name = raw.toString((entry.generalPurposeBitFlag & 0x800) !== 0 ? 'utf8' : 'latin1');
        if (escapesDirectory(name)) {
          reject(new AppError(400, 'ZIP_UNSAFE_PATH', `${file}: entry "${name}" points outside the archive's directory`, { file: name }));
          return;
        }
        declared += entry.uncompressedSize;
        if (declared > maxBytes) {
          reject(new AppError(413, 'ZIP_TOO_LARGE', `${file} expands past the limit of ${maxBytes} bytes (ZIP_MAX_BYTES)`, { file }));
          return;
        }
        if (name.endsWith('/')) {
          zip.readEntry();
          return;
        }
        readEntry(zip, entry, budget, maxBytes, file).then(
          (content) => {
            files.set(name.replace(/\\/g, '/'), content);
            zip.readEntry();
          },
          (err: unknown) =>
            reject(err instanceof AppError ? err : new AppError(400, 'ZIP_INVALID', `${file}: entry "${name}" is damaged: ${(err as Error).message}`, { file })),
        );
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  return { files };
}
