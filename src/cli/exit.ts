/** Exit codes of the command line (docs/reference.md). */
export const EXIT = { ADOPT: 0, REJECT: 1, ERROR: 2, CONFIG: 78 } as const;
