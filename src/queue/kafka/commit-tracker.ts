/**
 * Offset-commit bookkeeping of a Kafka worker, without a broker: which offset of each owned partition
 * may be committed to the group.
 *
 * A worker receives a partition's records in offset order and finishes them in any order (claims run
 * concurrently, retries and dead letters finish a record too). The group's committed offset means
 * "everything below it is done", so the commit point only moves over the CONTIGUOUS finished prefix:
 * never past an unfinished record (at-least-once). Offsets need not be dense (compaction, transaction
 * markers): the point moves to the next received-and-unfinished offset, or past the last received.
 *
 * `R` is the caller's record: the tracker keeps it by offset so the caller can tell its own record
 * from a stale one after a revoke and a re-assignment (`owns`).
 */
export interface CommitRequest {
  partition: number;
  /** The offset to commit: the next one to read. */
  offset: bigint;
}

interface Partition<R> {
  /** Received offsets not yet behind the commit point, ascending. */
  order: bigint[];
  recs: Map<bigint, { rec: R; done: boolean }>;
  maxReceived: bigint;
  /** Committed to the group (next to read), as far as this worker knows. */
  committed: bigint;
  /** Wanted committed: every record below it is finished. */
  want: bigint;
}

export class CommitTracker<R> {
  readonly #parts = new Map<number, Partition<R>>();

  /** Partitions with records received since they were (re)assigned. */
  partitions(): number[] {
    return [...this.#parts.keys()];
  }

  /** True when `offset` of `partition` was received already (a refetch after a rejoin). */
  received(partition: number, offset: bigint): boolean {
    const st = this.#parts.get(partition);
    return st !== undefined && offset <= st.maxReceived;
  }

  /**
   * Tracks a record. Offsets of a partition must come in ascending order; the first one received
   * after an assignment is where the group resumed (its committed offset).
   */
  receive(partition: number, offset: bigint, rec: R): void {
    let st = this.#parts.get(partition);
    if (!st) {
      st = { order: [], recs: new Map(), maxReceived: offset - 1n, committed: offset, want: offset };
      this.#parts.set(partition, st);
    }
    if (offset <= st.maxReceived) throw new RangeError(`partition ${partition}: offset ${offset} received after ${st.maxReceived}`);
    st.order.push(offset);
    st.recs.set(offset, { rec, done: false });
    st.maxReceived = offset;
  }

  /** True when `rec` is the record tracked at `partition`/`offset` (not one of a revoked assignment). */
  owns(partition: number, offset: bigint, rec: R): boolean {
    return this.#parts.get(partition)?.recs.get(offset)?.rec === rec;
  }

  /** Records of `partition` not yet behind the commit point, in offset order. */
  records(partition: number): R[] {
    const st = this.#parts.get(partition);
    return st ? st.order.map((o) => st.recs.get(o)!.rec) : [];
  }

  /**
   * Marks a record finished and moves its partition's commit point over the finished prefix. Returns
   * true when the point moved (a commit is due); false for an offset not tracked (revoked, or never
   * received).
   */
  finish(partition: number, offset: bigint): boolean {
    const st = this.#parts.get(partition);
    const entry = st?.recs.get(offset);
    if (!st || !entry) return false;
    entry.done = true;
    while (st.order.length > 0 && st.recs.get(st.order[0])!.done) st.recs.delete(st.order.shift()!);
    const target = st.order.length > 0 ? st.order[0] : st.maxReceived + 1n;
    if (target <= st.want) return false;
    st.want = target;
    return true;
  }

  /** Offsets to commit now: partitions of `assigned` whose commit point moved past what was committed. */
  due(assigned: ReadonlySet<number>): CommitRequest[] {
    const out: CommitRequest[] = [];
    for (const [partition, st] of this.#parts) if (st.want > st.committed && assigned.has(partition)) out.push({ partition, offset: st.want });
    return out;
  }

  /** Records that the group accepted a commit (a later, smaller acknowledgement never moves it back). */
  committed(requests: readonly CommitRequest[]): void {
    for (const { partition, offset } of requests) {
      const st = this.#parts.get(partition);
      if (st && offset > st.committed) st.committed = offset;
    }
  }

  /** What this worker knows to be committed for `partition` (undefined: nothing received). */
  committedOffset(partition: number): bigint | undefined {
    return this.#parts.get(partition)?.committed;
  }

  /**
   * Forgets every partition not in `keep` (a new assignment); returns the records each held, so the
   * caller can mark its claims lost. Their offsets are not committed by this worker any more.
   */
  revoke(keep: ReadonlySet<number>): { partition: number; records: R[] }[] {
    const out: { partition: number; records: R[] }[] = [];
    for (const [partition, st] of [...this.#parts]) {
      if (keep.has(partition)) continue;
      out.push({ partition, records: st.order.map((o) => st.recs.get(o)!.rec) });
      this.#parts.delete(partition);
    }
    return out;
  }

  clear(): void {
    this.#parts.clear();
  }
}
