/**
 * The layers of runtime/ (see STYLE.md), kept by a tool rather than by memory. `npm run
 * lint` runs these rules; a finding fails CI.
 *
 * From the bottom: sdk/ (what handler files import) -> contracts/ (shared types and
 * wire formats) -> schedule/ (cron) -> config/, resilience/, codec/ -> telemetry/, bundle/ -> invoke/ ->
 * isolation/, nats/ -> ordering/, ingress/, http/, testing/, cli/ -> console/ -> function/ (one
 * function's runtime) -> host.ts, cli.ts, dev.ts. A module may import its own folder and
 * the folders its rule names; nothing in a folder imports the files at the top.
 */
const layer = (folder, below) => ({
  name: `${folder}-imports-only-below`,
  comment: `runtime/${folder}/ may import only ${below.join(", ") || "nothing else of runtime/"}`,
  severity: "error",
  from: { path: `^runtime/${folder}/` },
  to: {
    path: "^runtime/",
    pathNot: [`^runtime/${folder}/`, ...below.map((b) => `^runtime/${b}/`), "^runtime/package-root\\.ts$", "^runtime/child-process\\.ts$"],
  },
});

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "A cycle makes two modules one: neither can be read, tested or moved alone.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "nats-client-only-in-nats",
      comment: "@nats-io/* is imported only under runtime/nats/ (and by the CLI where it must): invoke/ sees a Delivery, never a JsMsg.",
      severity: "error",
      from: { path: "^runtime/", pathNot: ["^runtime/nats/", "^runtime/cli/"] },
      to: { path: "node_modules/@nats-io/" },
    },
    {
      name: "otel-sdk-only-in-telemetry",
      comment: "The OpenTelemetry SDK and prom-client are set up in telemetry/ only; others use @opentelemetry/api.",
      severity: "error",
      from: { path: "^runtime/", pathNot: "^runtime/telemetry/" },
      to: { path: "node_modules/(@opentelemetry/(?!api/)|prom-client/)" },
    },
    layer("sdk", []),
    layer("contracts", ["sdk"]),
    layer("codec", ["contracts", "sdk", "config"]),
    layer("schedule", ["contracts", "sdk"]),
    layer("config", ["contracts", "sdk", "resilience", "schedule"]),
    layer("resilience", ["contracts", "sdk", "config"]),
    layer("telemetry", ["contracts", "sdk", "config"]),
    layer("bundle", ["contracts", "sdk", "config"]),
    layer("invoke", ["contracts", "sdk", "config", "codec", "resilience", "telemetry", "bundle"]),
    layer("isolation", ["invoke", "contracts", "sdk", "config", "codec", "resilience", "telemetry", "bundle"]),
    layer("nats", ["contracts", "sdk", "config", "codec", "resilience", "schedule", "telemetry"]),
    layer("http", ["contracts", "sdk", "config", "telemetry"]),
    layer("ordering", ["contracts", "sdk", "config", "codec", "resilience", "telemetry", "invoke", "nats"]),
    layer("ingress", ["contracts", "sdk", "config", "codec", "telemetry", "http"]),
    layer("testing", ["contracts", "sdk", "config", "codec", "resilience", "telemetry", "bundle", "invoke"]),
    layer("cli", ["contracts", "sdk", "config", "codec", "telemetry", "nats"]),
    // The web console's server (and, under web/, its page, which imports only console/ types and uPlot).
    layer("console", ["contracts", "sdk", "config", "telemetry", "nats", "cli"]),
    layer("function", [
      "contracts",
      "sdk",
      "config",
      "codec",
      "resilience",
      "telemetry",
      "bundle",
      "invoke",
      "isolation",
      "nats",
      "ordering",
    ]),
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default", "types"] },
    exclude: { path: "(^|/)\\.jetfn/" },
  },
};
