/** Small DOM helpers: elements from a tag, attributes and children; the API with the CSRF token. */

type Child = Node | string | number | null | undefined | false;
type Attributes = Record<string, string | number | boolean | EventListener | null | undefined>;

/** An element: attributes (`on<event>` ones are listeners; false/null/undefined are left out) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name in element && typeof value !== "string" && name !== "class")
      (element as unknown as Record<string, unknown>)[name] = value;
    else element.setAttribute(name === "className" ? "class" : name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

export function append(parent: Node, children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

/** Replaces what `element` holds. */
export function fill(element: Element, ...children: Child[]): void {
  element.replaceChildren();
  append(element, children);
}

/** Sets the text only when it changed (keeps focus and selection in live tables). */
export function setText(element: Element, text: string): void {
  if (element.textContent !== text) element.textContent = text;
}

const csrf = (): string => document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ?? "";

/** A failed API call, with the server's message. */
export class ApiError extends Error {}

async function answer<T>(response: Response): Promise<T> {
  if (response.status === 401) {
    location.assign("/login");
    throw new ApiError("log in first");
  }
  const body = (await response.json().catch(() => ({}))) as { error?: string };
  if (!response.ok) throw new ApiError(body.error ?? `${response.status} ${response.statusText}`);
  return body as T;
}

export async function getJson<T>(path: string): Promise<T> {
  return answer<T>(await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" }));
}

/** A change: a POST with a JSON body and the page's CSRF token. */
export async function postJson<T>(path: string, body: unknown): Promise<T> {
  return answer<T>(
    await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf(), Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body),
    }),
  );
}

/** `2026-12-07T11:46:25.000Z` as a short local time, the full time in a tooltip. */
export function time(iso: string | undefined): HTMLTimeElement | string {
  if (!iso) return "-";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const today = new Date().toDateString() === at.toDateString();
  const text = today ? at.toLocaleTimeString() : at.toLocaleString();
  return h("time", { datetime: iso, title: iso }, text);
}

/** `42s`, `5m03s`, `2h05m`, `3d04h`, as `jetfn status`. */
export function uptime(ms: number | undefined): string {
  if (ms === undefined) return "-";
  const s = Math.max(0, Math.floor(ms / 1000));
  const pad = (n: number): string => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d${pad(Math.floor(s / 3600) % 24)}h`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * A modal dialog with `content`, a confirming button named `confirm` and Cancel; resolves
 * with true when confirmed. Escape cancels; focus returns to where it was.
 */
export function confirmDialog(title: string, content: Child[], confirm: string): Promise<boolean> {
  return new Promise((resolve) => {
    const back = document.activeElement as HTMLElement | null;
    const heading = h("h2", { id: "dialog-title" }, title);
    const form = h("form", { method: "dialog" });
    const ok = h("button", { type: "submit", value: "ok", class: "danger" }, confirm);
    const cancel = h("button", { type: "submit", value: "cancel", formnovalidate: true }, "Cancel");
    append(form, [...content, h("div", { class: "buttons" }, ok, cancel)]);
    const dialog = h("dialog", { "aria-labelledby": "dialog-title" }, heading, form);
    dialog.addEventListener("close", () => {
      dialog.remove();
      back?.focus();
      resolve(dialog.returnValue === "ok");
    });
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}

/** A polite status line for what an action did (or why it failed). */
export function notice(region: Element, text: string, failed = false): void {
  fill(region, h("p", { class: failed ? "error" : "ok", role: failed ? "alert" : null }, text));
}
