/**
 * The house is one-way: no import cycle between the files of src/, none between its top-level
 * folders (a file directly under src/ counts as a folder of its own), and no source file over 700
 * lines. Every import counts: `import`, `import type`, `export … from`, `import('…')` (also in type
 * positions) and `require('…')`. The imports are read with the TypeScript parser, not run.
 *
 * docs/architecture.md draws the folders in the order this test keeps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'src');
const MAX_LINES = 700;

/** Files still over the limit while their owners split them: path → who is splitting it (none today). */
const oversizeExceptions: Record<string, string> = {};

/**
 * Where `process.env` may be read: the command line reads the environment once and passes it down;
 * the programmatic entry points fall back to it once. Anywhere else the environment is a parameter.
 */
const envReaders: Record<string, string> = {
  'src/cli/': 'the command line',
  'src/evaluate.ts': 'runEvaluation(): the entry point of a programmatic run',
  'src/daemon/daemon.ts': 'startWorker(): the entry point of a programmatic worker',
  'src/execution/pool.ts': 'a case pool built without an environment (tests, benches)',
  'src/execution/process-pool.ts': 'a case pool built without an environment (tests, benches)',
  'src/case-runner/case-thread.ts': "MG_CASE_THREAD: a case thread's entry point marks its own environment, which what it starts inherits (execution/reap.ts)",
  'src/codec/index.ts': 'METAGUARD_NATIVE: a switch of the process (CI runs the suite with it), read where the codec is made',
  'src/codec/native.ts': 'METAGUARD_NATIVE_PATH and NOTIFY_SOCKET: the native binary is loaded once per process',
  'src/queue/sqs/client.ts': 'AWS_REGION beside the AWS SDK, which reads the environment itself (i14-rest; to pass down through createBackend)',
};

const posix = (p: string) => p.split(sep).join('/');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(ts|mts|cts|js|mjs|cjs)$/.test(name) && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

interface Import {
  specifier: string;
  line: number;
  /** `import type`, `export type … from` or a type-position `import('…')`. */
  typeOnly: boolean;
}

/** Every module specifier a file names, found by walking its syntax tree. */
export function importsOf(path: string, text = readFileSync(path, 'utf8')): Import[] {
  const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const out: Import[] = [];
  const add = (node: ts.Node, spec: ts.Node | undefined, typeOnly: boolean) => {
    if (spec && ts.isStringLiteralLike(spec)) {
      out.push({ specifier: spec.text, line: file.getLineAndCharacterOfPosition(node.getStart()).line + 1, typeOnly });
    }
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const typeOnly = clause !== undefined && (clause.isTypeOnly || (clause.name === undefined && clause.namedBindings !== undefined && ts.isNamedImports(clause.namedBindings) && clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      add(node, node.moduleSpecifier, typeOnly);
    } else if (ts.isExportDeclaration(node)) add(node, node.moduleSpecifier, node.isTypeOnly);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node, node.moduleReference.expression, node.isTypeOnly);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node, node.argument.literal, true);
    else if (ts.isCallExpression(node)) {
      const dynamic = node.expression.kind === ts.SyntaxKind.ImportKeyword;
      const required = ts.isIdentifier(node.expression) && node.expression.text === 'require';
      if ((dynamic || required) && node.arguments.length > 0) add(node, node.arguments[0], false);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return out;
}

/** A relative specifier → the source file it names (`./x.js` is `./x.ts` in the source tree), or undefined. */
function resolveImport(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const base = resolve(dirname(from), specifier);
  const stem = base.replace(/\.(js|mjs|cjs|ts|mts|cts)$/, '');
  const candidates = [base, `${stem}.ts`, `${stem}.mts`, `${stem}.cts`, `${stem}.js`, `${stem}.mjs`, join(base, 'index.ts'), join(base, 'index.js')];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile());
}

/** The unit of the folder rule: `src/queue/redis/backend.ts` → `queue`; `src/errors.ts` → `errors.ts`. */
const unitOf = (file: string) => posix(relative(srcDir, file)).split('/')[0];

interface Edge {
  from: string;
  to: string;
  line: number;
  typeOnly: boolean;
}

let built: { files: string[]; edges: Edge[] } | undefined;

/** Every import between two files of src/, read once. */
function graph(): { files: string[]; edges: Edge[] } {
  if (built) return built;
  const files = sourceFiles(srcDir);
  const edges: Edge[] = [];
  for (const from of files) {
    for (const imp of importsOf(from)) {
      const to = resolveImport(from, imp.specifier);
      if (to !== undefined && to.startsWith(srcDir + sep)) edges.push({ from, to, line: imp.line, typeOnly: imp.typeOnly });
    }
  }
  built = { files, edges };
  return built;
}

/** Strongly connected components with more than one member (Tarjan), plus nodes importing themselves. */
export function cycles(nodes: string[], next: (n: string) => string[]): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const strong = (v: string) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of next(v)) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || next(v).includes(v)) out.push(scc.sort());
    }
  };
  for (const n of nodes) if (!idx.has(n)) strong(n);
  return out;
}

/** The shortest loop through the first member of a cycle, as the imports that make it (breadth-first). */
function shortestLoop(scc: string[], edges: Edge[]): Edge[] {
  const members = new Set(scc);
  const inside = edges.filter((e) => members.has(e.from) && members.has(e.to));
  const start = scc[0];
  const via = new Map<string, Edge>();
  const queue = [start];
  while (queue.length > 0) {
    const at = queue.shift()!;
    for (const e of inside.filter((x) => x.from === at)) {
      if (e.to === start) {
        const loop = [e];
        for (let n = at; n !== start; n = via.get(n)!.from) loop.unshift(via.get(n)!);
        return loop;
      }
      if (!via.has(e.to)) {
        via.set(e.to, e);
        queue.push(e.to);
      }
    }
  }
  return inside;
}

const describeEdge = (e: Edge) => `${posix(relative(root, e.from))}:${e.line} imports ${e.typeOnly ? 'type from ' : ''}${posix(relative(root, e.to))}`;

test('the import reader sees every kind of import', () => {
  const text = [
    "import a from './a.js';",
    "import type { B } from './b.js';",
    "import { type C } from './c.js';",
    "export { d } from './d.js';",
    "export type { E } from './e.js';",
    "const f = await import('./f.js');",
    "let g: typeof import('./g.js');",
    "const h = require('./h.js');",
    "import './i.js';",
    'const j = await import(someVariable);',
  ].join('\n');
  const found = importsOf('/virtual/x.ts', text);
  assert.deepEqual(
    found.map((i) => [i.specifier, i.typeOnly]),
    [['./a.js', false], ['./b.js', true], ['./c.js', true], ['./d.js', false], ['./e.js', true], ['./f.js', false], ['./g.js', true], ['./h.js', false], ['./i.js', false]],
  );
});

test('the cycle finder finds loops and passes a one-way graph', () => {
  const loop: Record<string, string[]> = { a: ['b'], b: ['c'], c: ['a'], d: ['a'], e: ['e'] };
  assert.deepEqual(cycles(Object.keys(loop), (n) => loop[n] ?? []), [['a', 'b', 'c'], ['e']]);
  const oneWay: Record<string, string[]> = { a: ['b', 'c'], b: ['c'], c: [] };
  assert.deepEqual(cycles(Object.keys(oneWay), (n) => oneWay[n] ?? []), []);
});

test('every relative import of src/ names a file that exists', () => {
  const broken: string[] = [];
  for (const from of sourceFiles(srcDir)) {
    for (const imp of importsOf(from)) {
      if (imp.specifier.startsWith('.') && !resolveImport(from, imp.specifier) && !/\.(css|json)$/.test(imp.specifier)) {
        broken.push(`${posix(relative(root, from))}:${imp.line} ${imp.specifier}`);
      }
    }
  }
  assert.deepEqual(broken, []);
});

test('no import cycle between the files of src/', () => {
  const { files, edges } = graph();
  const next = new Map<string, string[]>();
  for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const found = cycles(files, (f) => next.get(f) ?? []);
  const report = found.map((scc) => `  ${scc.length} files in a cycle; one loop:\n${shortestLoop(scc, edges).map((e) => `    ${describeEdge(e)}`).join('\n')}`);
  assert.equal(found.length, 0, `import cycles between files:\n${report.join('\n')}`);
});

test('no import cycle between the top-level folders of src/', () => {
  const { files, edges } = graph();
  const units = [...new Set(files.map(unitOf))];
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    const [a, b] = [unitOf(e.from), unitOf(e.to)];
    if (a !== b) next.set(a, (next.get(a) ?? new Set()).add(b));
  }
  const found = cycles(units, (u) => [...(next.get(u) ?? [])]);
  const report = found.map((scc) => {
    const members = new Set(scc);
    const ties = edges.filter((e) => unitOf(e.from) !== unitOf(e.to) && members.has(unitOf(e.from)) && members.has(unitOf(e.to))).map((e) => `    ${describeEdge(e)}`);
    return `  cycle between ${scc.join(', ')}:\n${ties.join('\n')}`;
  });
  assert.equal(found.length, 0, `import cycles between folders of src/:\n${report.join('\n')}`);
});

test(`no source file of src/ is over ${MAX_LINES} lines`, (t) => {
  const over: string[] = [];
  const sizes = new Map<string, number>();
  for (const file of sourceFiles(srcDir)) {
    const text = readFileSync(file, 'utf8');
    const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    const rel = posix(relative(root, file));
    sizes.set(rel, lines);
    if (lines > MAX_LINES && !(rel in oversizeExceptions)) over.push(`${rel}: ${lines} lines`);
  }
  assert.deepEqual(over, [], `files over ${MAX_LINES} lines (split them by concern)`);
  // An exception whose file has been split is said, not failed: the split may land before this list is trimmed.
  for (const rel of Object.keys(oversizeExceptions).filter((r) => (sizes.get(r) ?? 0) <= MAX_LINES)) {
    t.diagnostic(`${rel} is within ${MAX_LINES} lines now: remove it from oversizeExceptions`);
  }
});

test('process.env is read only where the environment enters (the CLI, the entry points)', () => {
  const readers: string[] = [];
  for (const file of sourceFiles(srcDir)) {
    const rel = posix(relative(root, file));
    const text = readFileSync(file, 'utf8');
    const code = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
    let reads = false;
    const visit = (node: ts.Node): void => {
      if (ts.isPropertyAccessExpression(node) && node.name.text === 'env' && ts.isIdentifier(node.expression) && node.expression.text === 'process') reads = true;
      ts.forEachChild(node, visit);
    };
    visit(code);
    if (reads && !Object.keys(envReaders).some((allowed) => (allowed.endsWith('/') ? rel.startsWith(allowed) : rel === allowed))) readers.push(rel);
  }
  assert.deepEqual(readers, [], 'these files read process.env: take the environment as a parameter from the caller instead');
});

/** `docs/architecture.md`'s floors: unit → floor number. */
function floors(): Map<string, number> {
  const text = readFileSync(join(root, 'docs', 'architecture.md'), 'utf8');
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^\| (\d+) \| (.+) \|$/gm)) {
    for (const name of m[2].matchAll(/`([^`]+)`/g)) out.set(name[1].replace(/\/$/, ''), Number(m[1]));
  }
  return out;
}

test('docs/architecture.md places every folder of src/ on a floor, and every import goes down', () => {
  const { files, edges } = graph();
  const floor = floors();
  const units = [...new Set(files.map(unitOf))].sort();
  assert.deepEqual(units.filter((u) => !floor.has(u)), [], 'folders of src/ missing from the floors table of docs/architecture.md');
  assert.deepEqual([...floor.keys()].filter((u) => !units.includes(u)).sort(), [], 'floors table names folders src/ does not have');
  const up = edges.filter((e) => unitOf(e.from) !== unitOf(e.to) && floor.get(unitOf(e.from))! <= floor.get(unitOf(e.to))!).map(describeEdge);
  assert.deepEqual(up, [], 'imports that do not go down a floor (move the code, or the folder in docs/architecture.md)');
});

test("the README's layout table names every folder of src/", () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const layout = readme.slice(readme.indexOf('## Layout'));
  const named = new Set([...layout.matchAll(/`src\/([^`/]+)\/?`/g)].map((m) => m[1]));
  const units = [...new Set(sourceFiles(srcDir).map(unitOf))].sort();
  assert.deepEqual(units.filter((u) => !named.has(u)), [], "folders of src/ missing from the README's layout table");
});
