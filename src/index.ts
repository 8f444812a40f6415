export { Database } from './database.js';
export type { OpenOptions, InMemoryOptions, DatabaseStats } from './database.js';
export { ModelVaultError } from '../storage/errors.js';
export type { ErrorCode } from '../storage/errors.js';
export type { RecoveryInfo } from '../storage/pager.js';
export type { VerifyReport } from '../storage/engine.js';
