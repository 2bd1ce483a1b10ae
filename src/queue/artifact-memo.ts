/**
 * Artifact bytes a backend keeps in memory: the most recently used ones, up to a byte budget.
 *
 * The RabbitMQ and Kafka backends read every artifact appended to their jobs stream or topic (a worker
 * cannot know which ones it will need), and the SQS backend kept each one it fetched or sent. Kept in
 * a plain Map, that was every evaluation's bundles for the life of the process: a worker up for months
 * grew without bound. Workers keep what they run on disk (the artifact cache), so an artifact evicted
 * here is only read again from the broker in the rare case that a worker needs it after that.
 */
export const ARTIFACT_MEMO_BYTES = 64 * 1024 * 1024;
/** What an entry costs beyond its bytes (its key, the Map slot, the view object), charged to the budget so that many tiny artifacts are bounded too. */
export const ENTRY_OVERHEAD_BYTES = 512;

const cost = (bytes: Uint8Array): number => bytes.byteLength + ENTRY_OVERHEAD_BYTES;

export class ArtifactMemo {
  readonly budget: number;
  /** In use order: the first entry is the least recently used. */
  readonly #entries = new Map<string, Uint8Array>();
  #bytes = 0;

  constructor(budget = ARTIFACT_MEMO_BYTES) {
    this.budget = budget;
  }

  get(sha256: string): Uint8Array | undefined {
    const bytes = this.#entries.get(sha256);
    if (bytes !== undefined) {
      this.#entries.delete(sha256);
      this.#entries.set(sha256, bytes);
    }
    return bytes;
  }

  /** Keeps `bytes` (the caller's copy, in an ArrayBuffer of its own: a view or a pooled Buffer would pin a larger one), evicting the least recently used past the budget. One larger than the budget is not kept. */
  set(sha256: string, bytes: Uint8Array): void {
    this.delete(sha256);
    if (cost(bytes) > this.budget) return;
    this.#entries.set(sha256, bytes);
    this.#bytes += cost(bytes);
    for (const [sha, old] of this.#entries) {
      if (this.#bytes <= this.budget) break;
      this.#entries.delete(sha);
      this.#bytes -= cost(old);
    }
  }

  delete(sha256: string): void {
    const old = this.#entries.get(sha256);
    if (old === undefined) return;
    this.#entries.delete(sha256);
    this.#bytes -= cost(old);
  }

  /** Bytes charged: those held, plus ENTRY_OVERHEAD_BYTES per entry. */
  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#entries.size;
  }
}

/**
 * A Map that forgets its oldest entry (by the time it was last set) past `max`: what a reader keeps of
 * records read back from a shared topic, which anyone with write access could fill.
 */
export class BoundedMap<V> {
  readonly #entries = new Map<string, V>();
  constructor(readonly max: number) {}

  set(key: string, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    if (this.#entries.size > this.max) this.#entries.delete(this.#entries.keys().next().value!);
  }

  get(key: string): V | undefined {
    return this.#entries.get(key);
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }
}

/**
 * Names seen, oldest forgotten first past `max`: what a stream reader remembers having read (so that
 * a miss in the memo means "read it again", not "never published") without growing for ever.
 */
export class BoundedSet extends BoundedMap<true> {
  add(item: string): void {
    this.set(item, true);
  }
}

/** `run()` once per key at a time: callers that ask while it runs share its promise. */
export function onceAtATime<T>(inFlight: Map<string, Promise<T>>, key: string, run: () => Promise<T>): Promise<T> {
  let p = inFlight.get(key);
  if (!p) {
    p = run().finally(() => inFlight.delete(key));
    inFlight.set(key, p);
  }
  return p;
}
