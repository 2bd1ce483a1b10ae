/**
 * The dashboard page: renders snapshots from the server-sent event stream (`/api/events`, falling
 * back to polling `/api/snapshot`) into five views. Every value is written with textContent, never
 * as HTML: worker ids, reasons and task names come from a queue anyone with access could write to.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import type { DeadRow, EvaluationRow, Overview, ReportRow, Snapshot, WorkerRow } from '../views.js';

type Child = Node | string | number | null | undefined | false;

function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | boolean | undefined> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'number' ? String(c) : c);
  }
  return el;
}

const meta = (name: string) => document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content ?? '';
const csrf = meta('metaguard-csrf');
const csrfHeader = meta('metaguard-csrf-header');

const fmt = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });
const pct = (x: number | null) => (x === null ? '–' : `${(x * 100).toFixed(1)}%`);
const bytes = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(0)} MiB` : `${Math.round(n / 1024)} KiB`);
function duration(s: number | null): string {
  if (s === null) return '–';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}
const time = (ms: number | null) => (ms === null ? '–' : new Date(ms).toLocaleTimeString());

let snapshot: Snapshot | undefined;
let chart: uPlot | undefined;

function body(view: string): HTMLElement {
  return document.querySelector<HTMLElement>(`#view-${view} .body`)!;
}

function setCount(view: string, n: number | null) {
  const el = document.querySelector<HTMLElement>(`[data-count="${view}"]`);
  if (el) el.textContent = n === null ? '' : ` ${n}`;
}

function banner(message: string, kind: 'info' | 'error') {
  const el = document.getElementById('banner')!;
  el.textContent = message;
  el.className = `banner ${kind}`;
  el.hidden = false;
  window.clearTimeout(Number(el.dataset.timer));
  el.dataset.timer = String(window.setTimeout(() => (el.hidden = true), kind === 'error' ? 10_000 : 4000));
}

async function post(path: string, payload?: unknown): Promise<Record<string, unknown> | undefined> {
  const res = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { [csrfHeader]: csrf, 'content-type': 'application/json' },
    body: payload === undefined ? '{}' : JSON.stringify(payload),
  });
  const out = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) {
    banner(`${res.status}: ${String(out.error ?? res.statusText)}`, 'error');
    return undefined;
  }
  return out;
}

function confirmAction(text: string): Promise<boolean> {
  const dialog = document.getElementById('confirm') as HTMLDialogElement;
  document.getElementById('confirm-text')!.textContent = text;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

function table(headers: string[], rows: HTMLTableRowElement[], empty: string): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  return h('table', {}, h('thead', {}, h('tr', {}, ...headers.map((t) => h('th', {}, t)))), h('tbody', {}, ...rows));
}

function stat(label: string, value: string | number, attrs: Record<string, string> = {}): HTMLElement {
  return h('div', { class: 'stat', ...attrs }, h('div', { class: 'value' }, String(value)), h('div', { class: 'label' }, label));
}

/**
 * Action buttons survive re-renders (tables are rebuilt on every snapshot): the same element moves into
 * the new row, so a click, a focus or a disabled state in progress is not lost to a refresh.
 */
const cancelButtons = new Map<string, HTMLButtonElement>();
const retryButtons = new Map<string, HTMLButtonElement>();

function reuse(cache: Map<string, HTMLButtonElement>, key: string, make: () => HTMLButtonElement): HTMLButtonElement {
  let b = cache.get(key);
  if (!b) cache.set(key, (b = make()));
  return b;
}

function prune(cache: Map<string, HTMLButtonElement>, keep: string[]) {
  const live = new Set(keep);
  for (const key of cache.keys()) if (!live.has(key)) cache.delete(key);
}

// ---- views ----

function renderOverview(o: Overview) {
  const el = body('overview');
  const stats = h(
    'div',
    { class: 'stats' },
    stat('active workers', o.activeWorkers, { 'data-stat': 'workers' }),
    stat('cases / s', fmt.format(o.casesPerSec), { 'data-stat': 'cases-per-sec' }),
    stat('in flight', o.inflight, { 'data-stat': 'inflight' }),
    stat('delayed (retry)', o.delayed),
    stat('dead-lettered', o.dead, { 'data-stat': 'dead' }),
    stat('recommended batch size', o.bench ? o.bench.recommendedBatchSize : 'run bench', { 'data-stat': 'batch-size', title: o.bench ? `from metaguard bench at ${new Date(o.bench.at).toLocaleString()}` : 'metaguard bench against this queue records it' }),
  );
  const byPriority = o.inflightByPriority !== null && o.deadByPriority !== null;
  const pending = table(
    byPriority ? ['priority', 'pending', 'in flight', 'dead'] : ['priority', 'pending'],
    (['critical', 'high', 'normal', 'low'] as const).map((p) =>
      h(
        'tr',
        { 'data-priority': p },
        h('td', {}, p),
        h('td', { class: 'num', 'data-field': 'pending' }, o.pending[p]),
        byPriority ? h('td', { class: 'num', 'data-field': 'inflight' }, o.inflightByPriority![p]) : null,
        byPriority ? h('td', { class: 'num', 'data-field': 'dead' }, o.deadByPriority![p]) : null,
      ),
    ),
    '',
  );
  const totals = h('p', { class: 'muted' }, `totals: ${o.totals.dispatched} batches dispatched, ${o.totals.completed} completed, ${o.totals.requeued} requeued`);
  let chartBox = el.querySelector<HTMLElement>('.chart');
  if (!chartBox) chartBox = h('div', { class: 'chart' });
  el.replaceChildren(stats, h('div', { class: 'columns' }, h('div', {}, h('h3', {}, 'Queue by priority'), pending), h('div', { class: 'grow' }, h('h3', {}, 'Completed per second (last 10 minutes)'), chartBox)), totals);
  const data: uPlot.AlignedData = [o.history.map((r) => r[0] / 1000), o.history.map((r) => r[1]), o.history.map((r) => r[2])];
  const width = Math.max(300, chartBox.clientWidth || 600);
  if (!chart) {
    chart = new uPlot(
      {
        width,
        height: 220,
        series: [{}, { label: 'cases/s', stroke: '#2563eb', width: 2 }, { label: 'batches/s', stroke: '#9333ea', width: 1 }],
        axes: [{}, { label: '/s' }],
        scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      },
      data,
      chartBox,
    );
  } else {
    chart.setData(data);
    if (Math.abs(chart.width - width) > 20) chart.setSize({ width, height: 220 });
  }
}

function renderWorkers(workers: WorkerRow[]) {
  setCount('workers', workers.length);
  const rows = workers.map((w) =>
    h(
      'tr',
      { 'data-worker': w.workerId, class: w.stale ? 'stale' : undefined },
      h('td', { class: 'mono' }, w.workerId),
      h('td', {}, w.host, h('span', { class: 'muted' }, ` pid ${w.pid}`)),
      h('td', { class: 'num' }, w.threads),
      h('td', { class: 'num', 'data-field': 'cases-per-sec' }, w.casesPerSec === null ? '–' : fmt.format(w.casesPerSec)),
      h('td', { class: 'num', 'data-field': 'cases' }, w.casesCompleted),
      h(
        'td',
        { class: 'threads' },
        ...w.threadLoad.map((t, i) =>
          h('span', { class: 'thread', title: `thread ${i}: ${pct(t.busy)} busy, heap ${bytes(t.heapBytes)}` }, h('meter', { min: '0', max: '1', value: String(t.busy) }), ` ${bytes(t.heapBytes)}`),
        ),
      ),
      h('td', { 'data-field': 'heartbeat' }, w.heartbeatAgeS === null ? '–' : `${fmt.format(w.heartbeatAgeS)} s ago`, w.stale ? h('span', { class: 'badge warn' }, 'stale') : null),
      h('td', {}, w.state),
      h('td', {}, w.version ?? '–', w.node ? h('span', { class: 'muted' }, ` node ${w.node}`) : null),
      h('td', {}, w.codec ?? '–'),
    ),
  );
  body('workers').replaceChildren(table(['worker', 'host', 'threads', 'cases/s', 'cases done', 'per thread: busy, heap', 'last heartbeat', 'state', 'version', 'codec'], rows, 'No active workers.'));
}

function renderEvaluations(evals: EvaluationRow[], o: Overview) {
  setCount('evaluations', evals.length);
  if (!o.capabilities.progress) {
    body('evaluations').replaceChildren(h('p', { class: 'empty' }, `The ${o.queue.backend} backend does not carry evaluation progress.`));
    return;
  }
  prune(cancelButtons, evals.map((e) => e.jobId));
  const rows = evals.map((e) => {
    const done = e.done.baseline + e.done.candidate;
    const cancel = reuse(cancelButtons, e.jobId, () => {
      const b = h('button', { class: 'cancel danger', title: 'withdraw the job, like Ctrl-C on its coordinator' }, 'Cancel');
      b.addEventListener('click', async () => {
        if (!(await confirmAction(`Cancel evaluation ${e.task} (${e.jobId})? Its queued batches are withdrawn and its coordinator stops without a verdict.`))) return;
        b.disabled = true;
        const r = await post(`/api/evaluations/${encodeURIComponent(e.jobId)}/cancel`);
        if (r) banner(`evaluation ${e.jobId} cancelled (${String(r.batchesRemoved)} queued batches withdrawn)`, 'info');
        else b.disabled = false;
      });
      return b;
    });
    if (e.cancelRequested || !o.capabilities.cancel) cancel.disabled = true;
    if (e.cancelRequested) cancel.textContent = 'cancelling…';
    return h(
      'tr',
      { 'data-job': e.jobId },
      h('td', {}, e.task),
      h('td', { class: 'mono' }, e.jobId),
      h('td', { class: 'progress' }, h('progress', { max: String(2 * e.total), value: String(done) }), h('span', { 'data-field': 'done' }, ` ${done} / ${2 * e.total}`), h('div', { class: 'muted' }, `baseline ${e.done.baseline} · candidate ${e.done.candidate}`)),
      h('td', { 'data-field': 'pass-rate' }, `baseline ${pct(e.passRate.baseline)}`, h('br'), `candidate ${pct(e.passRate.candidate)}`),
      h('td', { class: 'num' }, e.errors.baseline + e.errors.candidate),
      h('td', { class: 'num' }, e.casesPerSec === null ? '–' : fmt.format(e.casesPerSec)),
      h('td', { 'data-field': 'eta' }, duration(e.etaS)),
      h('td', {}, e.priority),
      h('td', {}, e.host, h('span', { class: 'muted' }, ` pid ${e.pid}`)),
      h('td', {}, cancel),
    );
  });
  body('evaluations').replaceChildren(table(['task', 'job', 'progress (cases, both roles)', 'pass rate so far', 'errors', 'cases/s', 'ETA', 'priority', 'coordinator', ''], rows, 'No evaluation is running.'));
}

function renderDead(dead: DeadRow[]) {
  setCount('dead', dead.length);
  const el = body('dead');
  const retryAll = h('button', { id: 'retry-all', disabled: dead.length === 0 }, 'Retry all');
  retryAll.addEventListener('click', async () => {
    const r = await post('/api/dead/retry');
    if (r) banner(`requeued ${String(r.retried)} dead-lettered batches`, 'info');
  });
  const purge = h('button', { id: 'purge', class: 'danger', disabled: dead.length === 0 }, 'Purge…');
  purge.addEventListener('click', async () => {
    if (!(await confirmAction(`Purge every dead-lettered batch (${dead.length} listed)? Their cases cannot be retried afterwards.`))) return;
    const r = await post('/api/dead/purge', { confirm: 'purge' });
    if (r) banner(`purged ${String(r.purged)} dead-lettered batches`, 'info');
  });
  prune(retryButtons, dead.map((d) => d.id));
  const rows = dead.map((d) => {
    const retry = reuse(retryButtons, d.id, () => {
      const b = h('button', { class: 'retry' }, 'Retry');
      b.addEventListener('click', async () => {
        b.disabled = true;
        const r = await post(`/api/dead/${encodeURIComponent(d.id)}/retry`);
        if (r) banner(`batch ${d.id} requeued`, 'info');
        else b.disabled = false;
      });
      return b;
    });
    return h(
      'tr',
      { 'data-batch': d.id },
      h('td', { class: 'mono' }, d.id),
      h('td', { class: 'mono' }, d.jobId ?? '–'),
      h('td', {}, d.role ?? '–'),
      h('td', { class: 'reason' }, h('span', { class: 'mono' }, d.code), ' ', d.reason),
      h('td', { class: 'num' }, d.attempts),
      h('td', {}, duration(d.ageS), ' ago'),
      h('td', {}, retry),
    );
  });
  el.replaceChildren(h('div', { class: 'actions' }, retryAll, purge), table(['batch', 'job', 'role', 'reason', 'attempts', 'age', ''], rows, 'The dead-letter store is empty.'));
}

function renderReports(reports: ReportRow[] | null) {
  setCount('reports', reports === null ? null : reports.length);
  if (reports === null) {
    body('reports').replaceChildren(h('p', { class: 'empty' }, 'Start the dashboard with --report-dir DIR to list reports.'));
    return;
  }
  const rows = reports.map((r) =>
    h(
      'tr',
      { 'data-report': r.file },
      h('td', {}, h('a', { href: `/reports/${encodeURIComponent(r.file)}`, target: '_blank', rel: 'noopener' }, r.task ?? r.file)),
      h('td', {}, r.verdict === null ? h('span', { class: 'badge' }, 'unreadable') : h('span', { class: `badge ${r.verdict}` }, r.verdict)),
      h('td', {}, r.reason ?? ''),
      h('td', { class: 'num' }, r.n ?? ''),
      h('td', { class: 'num' }, r.deltaPassRate === null ? '' : pct(r.deltaPassRate)),
      h('td', {}, new Date(r.date).toLocaleString()),
    ),
  );
  body('reports').replaceChildren(table(['task', 'verdict', 'reason', 'n', 'Δ pass rate', 'date'], rows, 'No reports in the report folder yet.'));
}

function render(s: Snapshot) {
  snapshot = s;
  document.getElementById('queue-name')!.textContent = `${s.overview.queue.backend} queue ${s.overview.queue.name}`;
  const live = document.getElementById('live')!;
  live.textContent = s.overview.error ? 'backend unreachable' : `live · ${time(s.overview.at)}`;
  live.className = s.overview.error ? 'live error' : 'live ok';
  setCount('overview', null);
  renderOverview(s.overview);
  renderWorkers(s.workers);
  renderEvaluations(s.evaluations, s.overview);
  renderDead(s.dead);
  renderReports(s.reports);
}

// ---- navigation and live updates ----

function show() {
  const view = location.hash.slice(1) || 'overview';
  for (const section of document.querySelectorAll<HTMLElement>('section.view')) section.hidden = section.id !== `view-${view}`;
  for (const a of document.querySelectorAll<HTMLAnchorElement>('nav a')) a.classList.toggle('active', a.dataset.view === view);
  if (view === 'overview' && snapshot) renderOverview(snapshot.overview);
}

let pollTimer: number | undefined;
async function poll() {
  try {
    const res = await fetch('/api/snapshot', { credentials: 'same-origin' });
    if (res.ok) render((await res.json()) as Snapshot);
  } finally {
    pollTimer = window.setTimeout(() => void poll(), 2000);
  }
}

function connect() {
  if (typeof EventSource === 'undefined') return void poll();
  const source = new EventSource('/api/events');
  source.addEventListener('snapshot', (ev) => render(JSON.parse((ev as MessageEvent<string>).data) as Snapshot));
  source.addEventListener('error', () => {
    const live = document.getElementById('live')!;
    live.textContent = 'reconnecting…';
    live.className = 'live error';
    if (source.readyState === EventSource.CLOSED && pollTimer === undefined) void poll();
  });
}

window.addEventListener('hashchange', show);
document.addEventListener('DOMContentLoaded', () => {
  show();
  connect();
});
