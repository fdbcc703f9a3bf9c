import type { DeadLetterPage, DeadLetterRow } from "../view.ts";
import { append, confirmDialog, fill, getJson, h, notice, plural, postJson, time } from "./dom.ts";

const base = (fn: string): string => `/api/functions/${encodeURIComponent(fn)}/dead-letters`;
const pageOf = (fn: string): string => `#/functions/${encodeURIComponent(fn)}/dead-letters`;

/**
 * The controls shared by the list and a dead letter's page: where a redrive sends them
 * (to their subject, or to this function alone) and the Redrive and Purge buttons, each
 * confirmed with how many it takes.
 */
function actions(fn: string, chosen: () => number[], done: (message: string) => void, region: HTMLElement): HTMLElement {
  const name = `target-${Math.random().toString(36).slice(2)}`;
  const toSubject = h("input", { type: "radio", name, id: `${name}-subject`, value: "subject", checked: true });
  const toFunction = h("input", { type: "radio", name, id: `${name}-only`, value: "only" });
  const redrive = async (): Promise<void> => {
    const seqs = chosen();
    if (seqs.length === 0) return notice(region, "Select the dead letters to redrive first.", true);
    const only = toFunction.checked;
    const where = only ? `to ${fn} alone (as replays)` : "to their original subject (every function bound to it sees them)";
    if (
      !(await confirmDialog(
        `Redrive ${plural(seqs.length, "dead letter")}?`,
        [h("p", {}, `${plural(seqs.length, "dead letter")} of ${fn} will be sent ${where}, then removed from the dead letters.`)],
        `Redrive ${seqs.length}`,
      ))
    )
      return;
    try {
      const result = await postJson<{ redriven: number; note?: string }>(`${base(fn)}/redrive`, { seqs, only });
      done(
        `Redriven ${plural(result.redriven, "dead letter")} of ${fn}${only ? ` to ${fn} alone` : ""}.${result.note ? ` Note: ${result.note}.` : ""}`,
      );
    } catch (error) {
      notice(region, (error as Error).message, true);
    }
  };
  const purge = async (): Promise<void> => {
    const seqs = chosen();
    if (seqs.length === 0) return notice(region, "Select the dead letters to purge first.", true);
    if (
      !(await confirmDialog(
        `Purge ${plural(seqs.length, "dead letter")}?`,
        [h("p", {}, `${plural(seqs.length, "dead letter")} of ${fn} will be removed for good. This cannot be undone.`)],
        `Purge ${seqs.length}`,
      ))
    )
      return;
    try {
      const result = await postJson<{ removed: number; missing: number[] }>(`${base(fn)}/purge`, { seqs });
      done(
        `Purged ${plural(result.removed, "dead letter")} of ${fn}.${result.missing.length > 0 ? ` ${result.missing.length} had gone already.` : ""}`,
      );
    } catch (error) {
      notice(region, (error as Error).message, true);
    }
  };
  return h(
    "div",
    { class: "toolbar" },
    h(
      "fieldset",
      {},
      h("legend", {}, "Redrive to"),
      h("span", {}, toSubject, h("label", { for: toSubject.id }, "the original subject")),
      h("span", {}, toFunction, h("label", { for: toFunction.id }, `only ${fn}`)),
    ),
    h("button", { type: "button", onclick: () => void redrive() }, "Redrive"),
    h("button", { type: "button", class: "danger", onclick: () => void purge() }, "Purge"),
  );
}

/** The dead letters of a function: a table with a checkbox each and "select all". */
export async function deadLetterList(main: HTMLElement, fn: string, message?: string): Promise<void> {
  const region = h("div", { class: "status", role: "status", "aria-live": "polite" });
  const heading = h("h1", { id: "page-title" }, `Dead letters of ${fn}`);
  fill(main, heading, h("p", {}, "Loading…"));
  const { letters, more } = await getJson<{ letters: DeadLetterRow[]; more: boolean }>(base(fn));
  const boxes: HTMLInputElement[] = [];
  const all = h("input", { type: "checkbox", id: "select-all", disabled: letters.length === 0 });
  const count = h("span", { class: "count", "aria-live": "polite" }, "none selected");
  const recount = (): void => {
    const n = boxes.filter((b) => b.checked).length;
    count.textContent = n === 0 ? "none selected" : `${n} of ${letters.length} selected`;
    all.checked = n > 0 && n === boxes.length;
    all.indeterminate = n > 0 && n < boxes.length;
  };
  all.addEventListener("change", () => {
    for (const box of boxes) box.checked = all.checked;
    recount();
  });
  const rows = letters.map((letter) => {
    const box = h("input", {
      type: "checkbox",
      value: letter.dlqSeq,
      "aria-label": `Select ${letter.dlqStream}#${letter.dlqSeq}`,
      onchange: recount,
    });
    boxes.push(box);
    return h(
      "tr",
      {},
      h("td", { class: "select" }, box),
      h("th", { scope: "row", "data-label": "Dead letter" }, h("a", { href: `${pageOf(fn)}/${letter.dlqSeq}` }, `#${letter.dlqSeq}`)),
      h("td", { "data-label": "Failed at" }, time(letter.failedAt)),
      h("td", { "data-label": "Reason" }, letter.reason || "-"),
      h("td", { "data-label": "Error", class: "error-text" }, letter.error || "-"),
      h("td", { "data-label": "Deliveries" }, String(letter.deliveries)),
      h("td", { "data-label": "Subject" }, letter.subject || "-"),
    );
  });
  const chosen = (): number[] => boxes.filter((b) => b.checked).map((b) => Number(b.value));
  const done = (text: string): void => void deadLetterList(main, fn, text);
  fill(
    main,
    heading,
    h(
      "p",
      { class: "summary" },
      letters.length === 0
        ? `${fn} has no dead letters.`
        : `${plural(letters.length, "dead letter")}${more ? " (the oldest 500 shown)" : ""}, oldest first.`,
      " ",
      h("a", { href: `#/replay/${encodeURIComponent(fn)}` }, `Replay events of ${fn}`),
    ),
    region,
    letters.length > 0 ? h("div", { class: "selection" }, all, h("label", { for: "select-all" }, "Select all"), count) : null,
    letters.length > 0 ? actions(fn, chosen, done, region) : null,
    letters.length > 0
      ? h(
          "div",
          { class: "scroll" },
          h(
            "table",
            { class: "letters cards" },
            h("caption", {}, `Dead letters of ${fn}`),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Selected")),
                ...["Dead letter", "Failed at", "Reason", "Error", "Deliveries", "Subject"].map((c) => h("th", { scope: "col" }, c)),
              ),
            ),
            h("tbody", {}, ...rows),
          ),
        )
      : null,
  );
  if (message) notice(region, message);
}

/** One dead letter in full: what failed and why, its headers, its body, its trace. */
export async function deadLetterDetail(main: HTMLElement, fn: string, seq: number): Promise<void> {
  const heading = h("h1", { id: "page-title" }, `Dead letter #${seq} of ${fn}`);
  fill(main, heading, h("p", {}, "Loading…"));
  const letter = await getJson<DeadLetterPage>(`${base(fn)}/${seq}`);
  const region = h("div", { class: "status", role: "status", "aria-live": "polite" });
  const fact = (term: string, ...value: (Node | string)[]): HTMLElement[] => [h("dt", {}, term), h("dd", {}, ...value)];
  const size = `${letter.size} byte${letter.size === 1 ? "" : "s"}`;
  const bodyTitle =
    letter.body.kind === "json" ? `Body: ${size}, JSON` : letter.body.kind === "hex" ? `Body: ${size}, not JSON (hex)` : "Body: empty";
  const done = (text: string): void => {
    location.hash = pageOf(fn);
    sessionStorage.setItem("jetfn-console-notice", text);
  };
  const dl = h("dl", { class: "facts" });
  append(dl, [
    ...fact("Reason", letter.reason || "-"),
    ...fact("Error", h("span", { class: "error-text" }, letter.error || "-")),
    ...fact("Subject", letter.subject || "-"),
    ...fact("Origin", `${letter.stream || "?"} #${letter.streamSeq || "?"}${letter.replayOf ? ` (a replay of ${letter.replayOf})` : ""}`),
    ...fact("Deliveries", String(letter.deliveries)),
    ...fact("Failed at", time(letter.failedAt)),
    ...fact("Stored at", time(letter.storedAt)),
    ...fact("Kept as", `${letter.dlqStream}#${letter.dlqSeq}`),
    ...(letter.traceUrl
      ? fact("Trace", h("a", { href: letter.traceUrl, target: "_blank", rel: "noopener noreferrer" }, "Open its trace"))
      : []),
  ]);
  fill(
    main,
    h("p", { class: "crumbs" }, h("a", { href: pageOf(fn) }, `All dead letters of ${fn}`)),
    heading,
    region,
    dl,
    actions(fn, () => [seq], done, region),
    h("h2", { id: "body-title" }, bodyTitle),
    letter.body.kind === "empty"
      ? h("p", {}, "(no bytes)")
      : h("pre", { class: "body", tabindex: 0, "aria-labelledby": "body-title" }, letter.body.text),
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "headers" },
        h("caption", {}, "Headers"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Value"))),
        h("tbody", {}, ...letter.headers.map(([name, value]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, value)))),
      ),
    ),
  );
}
