/** Bundles the runtime when it changed; resolves with the folder holding cli.mjs and worker.mjs. */
export function ensureRuntime(): Promise<string>;
