/** Task specs: what a task module default-exports. */

export type Args = unknown[];

export interface Property {
  name: string;
  check(output: any, ...args: any[]): boolean;
  /** `hard` properties decide whether a case passes; `soft` ones are only reported. @defaultValue 'hard' */
  mode?: 'hard' | 'soft';
}

export interface Relation {
  name: string;
  /** Maps the original arguments to new ones; `rng` is seeded from (seed, case index, relation index). */
  transform(args: any[], rng: () => number): any[];
  /** How the follow-up output must relate to the original one. @defaultValue 'equal' */
  expect?: 'equal' | 'not_equal' | 'properties_hold';
}

export interface TaskSpec {
  name: string;
  /** `n` argument lists, deterministic in `seed`. */
  gen(n: number, seed: number): Args[];
  properties: Property[];
  relations: Relation[];
  /** @defaultValue deep equality (`util.isDeepStrictEqual`) */
  equivalence?(a: unknown, b: unknown): boolean;
}

export type Solve = (...args: any[]) => unknown;

/** Identity helper that gives a task module its types. */
export function defineTask<T extends TaskSpec>(spec: T): T {
  return spec;
}
