/**
 * An operator's pause of one function (`jetfn pause`), as the CLI writes it to the KV
 * bucket `JETFN_CONTROL` and every host applies it. The seam between nats/ (which reads
 * and writes the bucket) and invoke/ (whose admission holds the function).
 */
export interface Pause {
  /** `--reason`, if one was given. */
  readonly reason?: string;
  /** When it was written (ISO 8601). */
  readonly at: string;
  /** Who wrote it: `user@host` of the CLI. */
  readonly by: string;
}

/** The value under `pause.<function>`: `jetfn resume` writes `paused: false`. */
export interface PauseRecord extends Pause {
  readonly paused: boolean;
}
