import type { FleetView, ReplayProgress } from "../view.ts";
import { fill, getJson, h, notice, postJson } from "./dom.ts";

/**
 * The replay form: the choices of `jetfn replay` (start at a sequence or a time, until,
 * subject, limit, key). "Count" is a dry run; "Replay" is enabled once the count for the
 * same choices is shown, and then shows the copies' progress.
 */
export function replayPage(main: HTMLElement, fleet: FleetView | undefined, chosen: string | undefined): void {
  const names = fleet?.functions.map((f) => f.name) ?? [];
  const field = (id: string, label: string, input: HTMLElement, hint?: string): HTMLElement =>
    h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", { id: `${id}-hint` }, hint) : null);
  const fn = h(
    "select",
    { id: "replay-function", name: "function", required: true },
    ...names.map((n) => h("option", { value: n, selected: n === chosen }, n)),
  );
  const fromSeq = h("input", {
    id: "replay-from-seq",
    name: "fromSeq",
    type: "number",
    min: 1,
    inputmode: "numeric",
    "aria-describedby": "replay-from-seq-hint",
  });
  const since = h("input", {
    id: "replay-since",
    name: "since",
    type: "text",
    placeholder: "2h or 2026-01-31T12:00:00Z",
    "aria-describedby": "replay-since-hint",
  });
  const until = h("input", { id: "replay-until", name: "until", type: "text", "aria-describedby": "replay-until-hint" });
  const subject = h("input", { id: "replay-subject", name: "subject", type: "text" });
  const limit = h("input", { id: "replay-limit", name: "limit", type: "number", min: 1, inputmode: "numeric" });
  const key = h("input", {
    id: "replay-key",
    name: "key",
    type: "text",
    pattern: "[A-Za-z0-9_-]{1,64}",
    "aria-describedby": "replay-key-hint",
  });
  const region = h("div", { class: "status", role: "status", "aria-live": "polite" });
  const progress = h("div", { class: "progress" });
  const count = h("button", { type: "submit" }, "Count");
  const run = h("button", { type: "button", disabled: true, class: "danger" }, "Replay");
  let counted: string | undefined;

  const request = (dryRun: boolean): Record<string, unknown> => ({
    fromSeq: fromSeq.value === "" ? undefined : Number(fromSeq.value),
    since: since.value.trim() || undefined,
    until: until.value.trim() || undefined,
    subject: subject.value.trim() || undefined,
    limit: limit.value === "" ? undefined : Number(limit.value),
    key: key.value.trim() || undefined,
    dryRun,
  });
  const choices = (): string => JSON.stringify([fn.value, request(false)]);
  const form = h(
    "form",
    { class: "replay", novalidate: true },
    field("replay-function", "Function", fn),
    h(
      "fieldset",
      {},
      h("legend", {}, "Start (one of them)"),
      field("replay-from-seq", "From sequence", fromSeq, "a sequence of the function's stream"),
      field("replay-since", "Since", since, "an ISO time, or a duration before now (2h)"),
    ),
    field("replay-until", "Until", until, "a sequence, an ISO time or a duration; empty: the stream's end now"),
    field("replay-subject", "Subject", subject),
    field("replay-limit", "Limit", limit),
    field("replay-key", "Key", key, "a new key replays events already replayed once more"),
    h("div", { class: "buttons" }, count, run),
  );
  form.addEventListener("input", () => {
    if (counted !== undefined && counted !== choices()) {
      counted = undefined;
      run.disabled = true;
      notice(region, "The choices changed: count again before replaying.");
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void (async () => {
      count.disabled = true;
      try {
        const result = await postJson<ReplayProgress>(`/api/functions/${encodeURIComponent(fn.value)}/replay`, request(true));
        if (result.state === "failed") throw new Error(result.error ?? "the count failed");
        counted = choices();
        run.disabled = result.read === 0;
        notice(
          region,
          `Dry run: ${result.read} event(s) would be replayed to ${fn.value}${result.seq ? ` (up to #${result.seq})` : ""}; nothing published.`,
        );
      } catch (error) {
        notice(region, (error as Error).message, true);
      } finally {
        count.disabled = false;
      }
    })();
  });
  run.addEventListener("click", () => {
    void (async () => {
      run.disabled = true;
      count.disabled = true;
      try {
        let state = await postJson<ReplayProgress>(`/api/functions/${encodeURIComponent(fn.value)}/replay`, request(false));
        while (state.state === "running") {
          show(progress, state);
          await new Promise((resolve) => setTimeout(resolve, 300));
          state = await getJson<ReplayProgress>(`/api/replays/${state.id}`);
        }
        show(progress, state);
        if (state.state === "failed") throw new Error(state.error ?? "the replay failed");
        notice(
          region,
          `Replayed to ${state.function}: read ${state.read}, published ${state.published}, duplicates skipped ${state.duplicates}.`,
        );
      } catch (error) {
        notice(region, (error as Error).message, true);
      } finally {
        count.disabled = false;
        counted = undefined;
      }
    })();
  });
  fill(
    main,
    h("h1", { id: "page-title" }, "Replay"),
    h(
      "p",
      { class: "summary" },
      "Runs past events of a function's stream again, through that function alone, as jetfn replay does. Count first, then replay.",
    ),
    names.length === 0 ? h("p", { class: "error" }, "No functions known yet.") : form,
    region,
    progress,
  );
}

function show(element: HTMLElement, state: ReplayProgress): void {
  const max = Math.max(state.total, state.read, 1);
  fill(
    element,
    h("label", { for: "replay-progress" }, `${state.state === "running" ? "Replaying" : "Replay"} ${state.read} of ${state.total}`),
    h("progress", { id: "replay-progress", max, value: state.read }),
    h("p", {}, `published ${state.published}, duplicates ${state.duplicates}${state.seq ? `, at #${state.seq}` : ""}`),
  );
}
