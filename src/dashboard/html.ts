/** The two HTML documents the dashboard serves: the page shell (the script fills it) and the sign-in form. */

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const views = [
  ['overview', 'Overview'],
  ['workers', 'Workers'],
  ['evaluations', 'Evaluations'],
  ['dead', 'Dead letters'],
  ['reports', 'Reports'],
] as const;

export function pageHtml(options: { csrfToken: string; csrfHeader: string; version: string }): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="metaguard-csrf" content="${escapeHtml(options.csrfToken)}">
<meta name="metaguard-csrf-header" content="${escapeHtml(options.csrfHeader)}">
<title>metaguard dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/app.css">
<script defer src="/assets/app.js"></script>
</head>
<body>
<header>
  <h1>metaguard</h1>
  <span id="queue-name" class="muted"></span>
  <nav>${views.map(([id, label]) => `<a href="#${id}" data-view="${id}">${label}<span class="count" data-count="${id}"></span></a>`).join('')}</nav>
  <span id="live" class="live" title="live updates">connecting…</span>
</header>
<div id="banner" class="banner" hidden></div>
<main>
${views.map(([id, label]) => `<section id="view-${id}" class="view" hidden><h2>${label}</h2><div class="body"></div></section>`).join('\n')}
</main>
<dialog id="confirm">
  <form method="dialog">
    <p id="confirm-text"></p>
    <menu><button value="cancel" id="confirm-no">Keep</button><button value="ok" id="confirm-yes" class="danger">Confirm</button></menu>
  </form>
</dialog>
<footer class="muted">metaguard ${escapeHtml(options.version)}</footer>
</body>
</html>
`;
}

export function signInHtml(error: string | null): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>metaguard dashboard: sign in</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/app.css">
</head>
<body class="signin">
<main>
<h1>metaguard dashboard</h1>
<form method="post" action="/login">
  <label for="token">Access token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  <button type="submit">Sign in</button>
  ${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
</form>
<p class="muted">Started with <code>--auth-token</code> or <code>METAGUARD_DASHBOARD_TOKEN</code>; scripts send <code>Authorization: Bearer &lt;token&gt;</code>.</p>
</main>
</body>
</html>
`;
}
