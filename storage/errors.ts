// The one error class of the library. It lives at the lowest layer so storage can raise it;
// src/index.ts re-exports it. An internal bug is a plain Error, never one of these codes.

export type ErrorCode =
  | 'NOT_A_DATABASE' | 'CORRUPT' | 'UNSUPPORTED_VERSION' | 'LOCKED' | 'READ_ONLY' | 'CLOSED'
  | 'VALIDATION' | 'DUPLICATE_KEY' | 'SCHEMA_INCOMPATIBLE' | 'UNKNOWN_COLLECTION'
  | 'TRANSACTION_CLOSED' | 'ABORTED' | 'IO';

export class ModelVaultError extends Error {
  override readonly name = 'ModelVaultError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Readonly<Record<string, unknown>> = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export const corruptAt = (offset: number, why: string, details: Record<string, unknown> = {}) =>
  new ModelVaultError('CORRUPT', `corrupt data at byte ${offset}: ${why}`, { offset, ...details });

/** Wraps an operating-system failure (EIO, ENOSPC, ...) so callers see code `IO`. */
export function ioError(what: string, cause: unknown): ModelVaultError {
  if (cause instanceof ModelVaultError) return cause;
  const sys = (cause as NodeJS.ErrnoException | undefined)?.code;
  return new ModelVaultError('IO', `${what} failed${sys ? ` (${sys})` : ''}`, { syscall: sys }, { cause });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new ModelVaultError('ABORTED', 'operation aborted', {}, { cause: signal.reason });
  }
}
