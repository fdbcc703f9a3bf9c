import type { FleetView, FunctionView } from "../view.ts";
import { Sparkline } from "./chart.ts";
import { append, confirmDialog, fill, h, notice, postJson, setText, time } from "./dom.ts";

const COLUMNS = [
  "Function",
  "State",
  "Hosts",
  "In flight",
  "Pending / ack pending",
  "Breaker",
  "Last minute ok / failed",
  "p99",
  "Last 10 minutes",
  "Dead letters",
  "Next tick",
  "Rate limit",
  "Actions",
] as const;

/** Columns shown only when some function needs them. */
const OPTIONAL = {
  "Next tick": (f: FunctionView) => f.nextTick !== undefined,
  "Rate limit": (f: FunctionView) => f.rateLimit !== undefined,
};

interface Row {
  readonly tr: HTMLTableRowElement;
  readonly cells: Record<(typeof COLUMNS)[number], HTMLTableCellElement>;
  readonly throughput: Sparkline;
  readonly p99: Sparkline;
  paused?: boolean;
}

/**
 * The fleet page: a row per function, updated in place by every server-sent view (text that
 * changed, the charts' data, the Pause/Resume button when the state flips), so focus and
 * reading position survive the updates.
 */
export class FleetPage {
  readonly element: HTMLElement;
  readonly #status = h("div", { class: "status", role: "status", "aria-live": "polite" });
  readonly #summary = h("p", { class: "summary" });
  readonly #head = h("tr");
  readonly #body = h("tbody");
  readonly #rows = new Map<string, Row>();
  readonly #headers = new Map<string, HTMLTableCellElement>();

  constructor() {
    for (const column of COLUMNS) {
      const th = h("th", { scope: "col" }, column);
      this.#headers.set(column, th);
      this.#head.appendChild(th);
    }
    const table = h("table", { class: "fleet cards" }, h("caption", {}, "Functions of the fleet"), h("thead", {}, this.#head), this.#body);
    this.element = h(
      "section",
      { "aria-labelledby": "fleet-title" },
      h("h1", { id: "fleet-title" }, "Fleet"),
      this.#summary,
      this.#status,
      h("div", { class: "scroll" }, table),
    );
  }

  update(view: FleetView): void {
    const answered = view.hosts.filter((host) => host.error === undefined).length;
    setText(
      this.#summary,
      `${view.hosts.length} host${view.hosts.length === 1 ? "" : "s"} (${answered} answering) on ${view.servers}, as of ${new Date(view.at).toLocaleTimeString()}`,
    );
    const shown = new Set<string>();
    for (const [column, needed] of Object.entries(OPTIONAL)) {
      const hidden = !view.functions.some(needed);
      this.#headers.get(column)!.hidden = hidden;
      shown.add(hidden ? "" : column);
    }
    const seen = new Set<string>();
    for (const fn of view.functions) {
      seen.add(fn.name);
      let row = this.#rows.get(fn.name);
      if (!row) {
        row = this.#row(fn.name);
        this.#rows.set(fn.name, row);
      }
      this.#body.appendChild(row.tr); // keeps the server's order
      this.#fillRow(row, fn, view.stepMs);
      for (const column of Object.keys(OPTIONAL) as (keyof typeof OPTIONAL)[]) row.cells[column].hidden = !shown.has(column);
    }
    for (const [name, row] of this.#rows) {
      if (!seen.has(name)) {
        row.tr.remove();
        this.#rows.delete(name);
      }
    }
  }

  #row(name: string): Row {
    const cells = {} as Row["cells"];
    const tr = h("tr", { "data-function": name });
    for (const column of COLUMNS) {
      const cell = column === "Function" ? h("th", { scope: "row" }) : h("td");
      cell.dataset.label = column;
      cells[column] = cell;
      tr.appendChild(cell);
    }
    append(cells.Function, [h("a", { href: `#/functions/${encodeURIComponent(name)}/dead-letters` }, name)]);
    const throughput = new Sparkline("throughput");
    const p99 = new Sparkline("p99");
    append(cells["Last 10 minutes"], [h("div", { class: "sparks" }, throughput.figure, p99.figure)]);
    return { tr, cells, throughput, p99 };
  }

  #fillRow(row: Row, fn: FunctionView, stepMs: number): void {
    const c = row.cells;
    const state =
      fn.hosts.length === 0
        ? "no host runs it"
        : fn.paused
          ? `paused${fn.pausedReason ? `: ${fn.pausedReason}` : ""}`
          : fn.bound
            ? "running"
            : "not bound";
    setText(c.State, state);
    c.State.className = fn.paused ? "paused" : fn.hosts.length === 0 || !fn.bound ? "warn" : "";
    c.State.title = fn.paused && fn.pausedAt ? `since ${fn.pausedAt}${fn.pausedBy ? ` by ${fn.pausedBy}` : ""}` : "";
    const names = fn.hosts.join(", ");
    if (c.Hosts.dataset.names !== names) {
      c.Hosts.dataset.names = names;
      fill(
        c.Hosts,
        h("span", { class: "count" }, String(fn.hosts.length)),
        fn.hosts.length > 0 ? h("small", { class: "names" }, names) : null,
      );
    }
    setText(c["In flight"], `${fn.inflight} / ${fn.limit}`);
    setText(c["Pending / ack pending"], `${fn.pending ?? "-"} / ${fn.ackPending ?? "-"}`);
    setText(c.Breaker, fn.breaker);
    c.Breaker.className = fn.breaker.startsWith("open") ? "bad" : fn.breaker.startsWith("half") ? "warn" : "";
    setText(c["Last minute ok / failed"], `${fn.successes} / ${fn.failures}`);
    c["Last minute ok / failed"].className = fn.failures > 0 ? "bad" : "";
    setText(c.p99, fn.p99Ms === undefined ? "-" : `${fn.p99Ms} ms`);
    row.throughput.update(fn.chart, stepMs);
    row.p99.update(fn.chart, stepMs);
    const letters = fn.deadLetters ?? 0;
    const link =
      c["Dead letters"].querySelector("a") ??
      c["Dead letters"].appendChild(h("a", { href: `#/functions/${encodeURIComponent(fn.name)}/dead-letters` }));
    setText(link, fn.deadLetters === undefined ? "-" : String(letters));
    link.setAttribute("aria-label", `${fn.deadLetters === undefined ? "unknown" : letters} dead letters of ${fn.name}`);
    c["Dead letters"].className = letters > 0 ? "bad" : "";
    if (fn.nextTick) fill(c["Next tick"], time(fn.nextTick));
    else setText(c["Next tick"], "-");
    setText(c["Rate limit"], fn.rateLimit ?? "-");
    if (row.paused !== fn.paused) {
      const hadFocus = c.Actions.contains(document.activeElement);
      row.paused = fn.paused;
      const button = fn.paused
        ? h("button", { type: "button", onclick: () => void this.#resume(fn.name) }, "Resume")
        : h("button", { type: "button", onclick: () => void this.#pause(fn.name) }, "Pause");
      button.title = `${fn.paused ? "Resume" : "Pause"} ${fn.name} on every host`;
      fill(c.Actions, button);
      if (hadFocus) button.focus();
    }
  }

  async #pause(name: string): Promise<void> {
    const input = h("input", { id: "pause-reason", name: "reason", type: "text", maxlength: 500, autocomplete: "off" });
    const ok = await confirmDialog(
      `Pause ${name}`,
      [
        h("p", {}, `Every host stops pulling ${name} within 2 s; invocations running now finish. Its events wait in the stream.`),
        h("label", { for: "pause-reason" }, "Reason (shown to everyone)"),
        input,
      ],
      "Pause",
    );
    if (!ok) return;
    await this.#act(`/api/functions/${encodeURIComponent(name)}/pause`, { reason: input.value });
  }

  async #resume(name: string): Promise<void> {
    await this.#act(`/api/functions/${encodeURIComponent(name)}/resume`, {});
  }

  async #act(path: string, body: unknown): Promise<void> {
    try {
      const { message } = await postJson<{ message: string }>(path, body);
      notice(this.#status, message);
    } catch (error) {
      notice(this.#status, (error as Error).message, true);
    }
  }
}
