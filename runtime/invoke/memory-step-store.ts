import type { StepStore, StoredStep } from "../contracts/steps.ts";

/**
 * Step records in a Map, with the compare-and-set rules of the KV bucket: `jetfn/testing`'s
 * store (a second `invoke()` of the same event replays what the first recorded), and the
 * unit tests' of the step journal.
 */
export class MemoryStepStore implements StepStore {
  readonly #entries = new Map<string, StoredStep>();
  #revision = 0;

  /** The records, by KV key, as JSON text. */
  get records(): ReadonlyMap<string, string> {
    return new Map([...this.#entries].map(([key, entry]) => [key, entry.value]));
  }

  async get(key: string): Promise<StoredStep | undefined> {
    return this.#entries.get(key);
  }

  async create(key: string, value: string): Promise<number | undefined> {
    if (this.#entries.has(key)) return undefined;
    return this.#put(key, value);
  }

  async update(key: string, value: string, revision: number): Promise<number | undefined> {
    if (this.#entries.get(key)?.revision !== revision) return undefined;
    return this.#put(key, value);
  }

  async delete(key: string, revision: number): Promise<void> {
    if (this.#entries.get(key)?.revision === revision) this.#entries.delete(key);
  }

  /** Forgets every record. */
  clear(): void {
    this.#entries.clear();
  }

  #put(key: string, value: string): number {
    const revision = ++this.#revision;
    this.#entries.set(key, { value, revision });
    return revision;
  }
}
