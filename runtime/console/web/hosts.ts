import type { FleetView } from "../view.ts";
import { fill, h, time, uptime } from "./dom.ts";

/** Every host of the `jetfn` service: version, uptime, functions, worker-thread restarts with reasons. */
export function hostsPage(main: HTMLElement, view: FleetView | undefined): void {
  const hosts = view?.hosts ?? [];
  const rows = hosts.map((host) => {
    const restarts = host.functions.filter((f) => (f.restarts ?? 0) > 0);
    return h(
      "tr",
      {},
      h("th", { scope: "row", "data-label": "Host" }, host.host),
      h("td", { "data-label": "Version" }, host.version),
      h("td", { "data-label": "Uptime" }, uptime(host.uptimeMs)),
      h(
        "td",
        { "data-label": "State", class: host.error ? "bad" : host.ready === false ? "warn" : "" },
        host.error ?? `${host.state ?? "?"}${host.ready === false ? " (not ready)" : ""}`,
      ),
      h(
        "td",
        { "data-label": "Functions" },
        host.functions.map((f) => `${f.name}${f.isolation ? ` (${f.isolation})` : ""}`).join(", ") || "-",
      ),
      h(
        "td",
        { "data-label": "Worker restarts" },
        restarts.length === 0
          ? "none"
          : h(
              "ul",
              { class: "plain" },
              ...restarts.map((f) =>
                h(
                  "li",
                  {},
                  `${f.name}: ${f.restarts}`,
                  f.lastRestart
                    ? h(
                        "span",
                        {},
                        `, last ${f.lastRestart.reason}${f.lastRestart.error ? ` (${f.lastRestart.error})` : ""} at `,
                        time(f.lastRestart.at),
                      )
                    : null,
                ),
              ),
            ),
      ),
    );
  });
  fill(
    main,
    h("h1", { id: "page-title" }, "Hosts"),
    h(
      "p",
      { class: "summary" },
      `${hosts.length} host${hosts.length === 1 ? "" : "s"} answered the jetfn service on ${view?.servers ?? "?"}.`,
    ),
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "hosts cards" },
        h("caption", {}, "Hosts"),
        h(
          "thead",
          {},
          h("tr", {}, ...["Host", "Version", "Uptime", "State", "Functions", "Worker restarts"].map((c) => h("th", { scope: "col" }, c))),
        ),
        h("tbody", {}, ...rows),
      ),
    ),
  );
}
