/** The console's two HTML documents: the page (everything else is drawn by its script) and the login form. */

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const HEAD = `<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/app.css">`;

/** The console's page: the script reads the CSRF token from its meta element. */
export function consolePage(options: { csrf: string; loginRequired: boolean }): string {
  return `<!doctype html>
<html lang="en">
<head>
${HEAD}
<meta name="csrf-token" content="${escapeHtml(options.csrf)}">
<title>jetfn console</title>
<script src="/assets/app.js" defer></script>
</head>
<body data-login="${options.loginRequired ? "required" : "none"}">
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <span class="brand">jetfn console</span>
  <nav aria-label="Pages">
    <a href="#/">Fleet</a>
    <a href="#/replay">Replay</a>
    <a href="#/hosts">Hosts</a>
  </nav>
  <span id="live" class="live" role="status" aria-live="polite">connecting…</span>
</header>
<main id="main" tabindex="-1"><p>Loading…</p></main>
<noscript><p>The jetfn console needs JavaScript.</p></noscript>
</body>
</html>
`;
}

/** The login form; `failed` after a wrong token. */
export function loginPage(failed: boolean): string {
  return `<!doctype html>
<html lang="en">
<head>
${HEAD}
<title>Log in · jetfn console</title>
</head>
<body>
<main id="main" class="login">
<h1>jetfn console</h1>
<form method="post" action="/login">
  <label for="token">Console token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  ${failed ? `<p class="error" role="alert">That token is not the console's.</p>` : ""}
  <button type="submit">Log in</button>
</form>
<p class="hint">The token is the value of <code>JETFN_CONSOLE_TOKEN</code> the console was started with.</p>
</main>
</body>
</html>
`;
}
