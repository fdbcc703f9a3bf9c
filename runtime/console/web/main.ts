import "uplot/dist/uPlot.min.css";
import "./console.css";
import type { FleetView } from "../view.ts";
import { deadLetterDetail, deadLetterList } from "./dead-letters.ts";
import { fill, getJson, h, postJson } from "./dom.ts";
import { FleetPage } from "./fleet.ts";
import { hostsPage } from "./hosts.ts";
import { replayPage } from "./replay.ts";

/**
 * The console's page: hash routes (`#/`, `#/functions/<name>/dead-letters[/<seq>]`,
 * `#/replay[/<name>]`, `#/hosts`), and the fleet kept live by the server's events.
 */
const main = document.getElementById("main")!;
const live = document.getElementById("live")!;
const fleet = new FleetPage();
let view: FleetView | undefined;
let route = "";
let shownHosts = "";
/** When the last picture arrived, by this browser's clock. */
let received = 0;

/** What the hosts page shows, but for the uptimes that grow on every poll. */
function hostsKey(fleetView: FleetView): string {
  return JSON.stringify(fleetView.hosts.map(({ uptimeMs: _uptime, ...host }) => host));
}

function render(): void {
  route = location.hash.replace(/^#/, "") || "/";
  const parts = route.split("/").filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll<HTMLAnchorElement>("nav a")) {
    const target = link.getAttribute("href")!.slice(1);
    if (target === "/" ? route === "/" || parts[0] === "functions" : route.startsWith(target)) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const shown = (async (): Promise<void> => {
    if (parts.length === 0) {
      fill(main, fleet.element);
      if (view) fleet.update(view);
      document.title = "Fleet · jetfn console";
    } else if (parts[0] === "functions" && parts[2] === "dead-letters" && parts.length === 3) {
      document.title = `Dead letters of ${parts[1]} · jetfn console`;
      const message = sessionStorage.getItem("jetfn-console-notice") ?? undefined;
      sessionStorage.removeItem("jetfn-console-notice");
      await deadLetterList(main, parts[1]!, message);
    } else if (parts[0] === "functions" && parts[2] === "dead-letters" && parts.length === 4) {
      document.title = `Dead letter #${parts[3]} of ${parts[1]} · jetfn console`;
      await deadLetterDetail(main, parts[1]!, Number(parts[3]));
    } else if (parts[0] === "replay") {
      document.title = "Replay · jetfn console";
      replayPage(main, view ?? (await getJson<FleetView | null>("/api/fleet")) ?? undefined, parts[1]);
    } else if (parts[0] === "hosts") {
      document.title = "Hosts · jetfn console";
      const current = view ?? (await getJson<FleetView | null>("/api/fleet")) ?? undefined;
      shownHosts = current ? hostsKey(current) : "";
      hostsPage(main, current);
    } else {
      fill(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the fleet")));
    }
  })();
  shown.catch((error: unknown) =>
    fill(main, h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, (error as Error).message)),
  );
  // Keyboard and screen-reader users land on the new page's heading.
  void shown.then(() => {
    const heading = main.querySelector<HTMLElement>("h1");
    if (heading) heading.tabIndex = -1;
    (heading ?? main).focus({ preventScroll: true });
  });
}

function listen(): void {
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => (live.textContent = "live"));
  events.addEventListener("error", () => {
    live.textContent = "reconnecting…";
    live.className = "live warn";
  });
  events.addEventListener("fleet", (event) => {
    view = JSON.parse((event as MessageEvent<string>).data) as FleetView;
    received = Date.now();
    live.textContent = `live · ${new Date(view.at).toLocaleTimeString()}`;
    live.className = "live";
    if (route === "/") fleet.update(view);
    else if (route === "/hosts" && hostsKey(view) !== shownHosts) {
      // Redrawn only when a host or its functions changed, so focus stays put.
      shownHosts = hostsKey(view);
      hostsPage(main, view);
    }
  });
}

if (document.body.dataset.login === "required") {
  const logout = async (): Promise<void> => {
    await postJson("/logout", {}).catch(() => undefined);
    location.assign("/login");
  };
  document.querySelector(".top")?.appendChild(h("button", { type: "button", class: "logout", onclick: () => void logout() }, "Log out"));
}
// The server sends a picture every 2 s: none for a while means the console lost the fleet (or NATS).
setInterval(() => {
  if (view && Date.now() - received > 8000) {
    live.textContent = `stale · last ${new Date(view.at).toLocaleTimeString()}`;
    live.className = "live warn";
  }
}, 2000);
window.addEventListener("hashchange", render);
render();
listen();
