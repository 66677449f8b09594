/**
 * Errors the app answers with a 4xx JSON body. Callers branch on `code`; analysts read `message`.
 * `where` locates bad input (file name, 1-based line/row in that file, column name).
 */
export interface InputLocation {
  file?: string;
  /** 1-based line number in the file (the header is line 1). */
  row?: number;
  column?: string;
}

/**
 * A request the app refuses: `statusCode` is the HTTP status (4xx), `code` a stable
 * machine-readable name (e.g. NOT_CSV, NO_SESSION), `where` the location of bad input.
 */
export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly where: InputLocation = {},
  ) {
    super(message);
    this.name = 'AppError';
  }
}

/** The JSON body of every error answer. */
export interface ErrorBody {
  status: 'error';
  code: string;
  message: string;
  file?: string;
  row?: number;
  column?: string;
}

/** Turn an AppError into its JSON body (location fields only when known). */
export function errorBody(err: AppError): ErrorBody {
  return { status: 'error', code: err.code, message: err.message, ...err.where };
}
