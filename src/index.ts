// Scalpel's library API. The CLI is a thin layer over what is exported here.
export * from './engine/types.js';
export { ScalpelError } from './errors.js';
