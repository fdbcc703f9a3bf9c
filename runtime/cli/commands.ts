import type { CommandSpec, OptionValues, Overview } from "./command-line.ts";

/**
 * Every command of the CLI, its options and its usage: what `jetfn --help`, `jetfn <command>
 * --help` and the argument parser (`command-line.ts`) read. An action of a group is named
 * `<group> <action>`. The overview lists them in this order.
 */
export const COMMANDS = {
  start: {
    synopsis: "",
    summary: "run every function in functions.yaml",
    options: {},
    positionals: false,
  },
  dev: {
    synopsis: "",
    summary: "like start, and reload on every change to functions/ or functions.yaml",
    options: {},
    positionals: false,
  },
  new: {
    synopsis: `<name> --subject <subject> [--stream <stream>] [--route "<METHOD> /path"]`,
    summary:
      "add functions/<name>.ts and its entry in functions.yaml; with --route,\nalso a route of the HTTP ingress that publishes to <subject>",
    options: {
      subject: { type: "string", value: "subject", description: "the subject the function is bound to (required)" },
      stream: { type: "string", value: "stream", description: "the stream holding it (default: the declared stream that captures it)" },
      route: {
        type: "string",
        value: "METHOD /path",
        description: 'add a route to routes: that publishes to the subject, like "POST /orders"',
      },
    },
    positionals: true,
  },
  build: {
    synopsis: "",
    summary: "bundle every handler into .jetfn/build",
    options: {},
    positionals: false,
  },
  validate: {
    synopsis: "",
    summary: "check functions.yaml, the environment and every handler; no connection",
    options: {},
    positionals: false,
  },
  schedules: {
    synopsis: "[--count n] [--json]",
    summary: "list the next ticks of every scheduled function, in its time zone; no connection",
    options: {
      count: { type: "string", value: "n", description: "ticks shown per function (default 3)" },
      json: { type: "boolean", description: "one JSON object per function" },
    },
    positionals: false,
  },
  publish: {
    synopsis: "<subject> <json|@file> [--header k=v]... [--msg-id id] [--delay 10m | --at <time>]",
    summary: "publish one event to JetStream; with --delay or --at, deliver it then\n(it waits in JETFN_DELAYED; prints its id)",
    options: {
      header: { type: "string", short: "H", multiple: true, value: "k=v", description: "a header of the event" },
      "msg-id": { type: "string", value: "id", description: "its Nats-Msg-Id: the same id twice in the duplicate window stores it once" },
      delay: { type: "string", value: "duration", description: "deliver it after this long (10s, 10m, 24h; at most a year)" },
      at: { type: "string", value: "time", description: "deliver it at this ISO 8601 time with a zone; a past one at once" },
    },
    positionals: true,
  },
  invoke: {
    synopsis: "<function> <json|@file> [--timeout 30s] [--header k=v]...",
    summary: "call a function with invoke: true over NATS and print its answer",
    options: {
      header: { type: "string", short: "H", multiple: true, value: "k=v", description: "a header of the request" },
      timeout: { type: "string", default: "30s", value: "duration", description: "how long to wait for the answer" },
    },
    positionals: true,
  },
  "delayed list": {
    synopsis: "[--subject s] [--limit n] [--json]",
    summary: "show the delayed events waiting, soonest due first",
    options: {
      subject: { type: "string", value: "subject", description: "only those for this subject (wildcards allowed)" },
      limit: { type: "string", value: "n", description: "show at most n (default 100)" },
      json: { type: "boolean", description: "one JSON object per line, the body in base64" },
    },
    positionals: false,
  },
  "delayed cancel": {
    synopsis: "<id>...",
    summary: "cancel delayed events by id: they are never delivered",
    options: {},
    positionals: true,
  },
  "dlq list": {
    synopsis: "[function] [--reason r] [--since <time|duration>] [--limit n] [--json]",
    summary:
      "show dead letters, oldest first; --reason is one of non-retryable,\nattempts-exhausted, undecodable, invalid, crashed, step-too-large,\nstep-not-json",
    options: {
      limit: { type: "string", value: "n", description: "show at most n (counting those that matched)" },
      json: { type: "boolean", description: "one JSON object per line" },
      reason: { type: "string", value: "reason", description: "only those that failed for this reason" },
      since: { type: "string", value: "time|duration", description: "only those that failed since an ISO time, or within a duration (2h)" },
    },
    positionals: true,
  },
  "dlq show": {
    synopsis: "<function> <seq> [--json]",
    summary: "print one dead letter (its JETFN_DLQ#<seq>): headers, failure,\norigin, and the body as JSON or a hex dump",
    options: {
      json: { type: "boolean", description: "one JSON object, the body's bytes in base64" },
    },
    positionals: true,
  },
  "dlq redrive": {
    synopsis: "<function> [--seq n]... [--only]",
    summary:
      "send a function's dead letters (or the given ones) back to\ntheir original subject, then remove them from the dead letters;\nwith --only, to that function alone, as replays",
    options: {
      seq: { type: "string", multiple: true, value: "n", description: "only the dead letter JETFN_DLQ#n" },
      only: { type: "boolean", description: "to this function alone, as replays, not to every function of the subject" },
    },
    positionals: true,
  },
  "dlq purge": {
    synopsis: "<function> [--seq n]... [--before <time|duration>] [--yes]",
    summary:
      "remove a function's dead letters (all, the given ones, or those\nthat failed before a time); asks on a terminal, else needs --yes",
    options: {
      seq: { type: "string", multiple: true, value: "n", description: "only the dead letter JETFN_DLQ#n" },
      before: {
        type: "string",
        value: "time|duration",
        description: "only those that failed before an ISO time, or longer ago than a duration (24h)",
      },
      yes: { type: "boolean", short: "y", description: "do not ask (needed without a terminal)" },
    },
    positionals: true,
  },
  "steps show": {
    synopsis: "<function> <run id> [--json]",
    summary:
      "list a run's recorded ctx.step results (name, state, when, size) and\nits completion record; the run id is the event's Nats-Msg-Id, else\n<stream>:<seq>",
    options: {
      json: { type: "boolean", description: "one JSON object per record" },
    },
    positionals: true,
  },
  "steps forget": {
    synopsis: "<function> <run id> [--yes]",
    summary: "remove a run's step records, so its next delivery runs every step\nagain; asks on a terminal, else needs --yes",
    options: {
      yes: { type: "boolean", short: "y", description: "do not ask (needed without a terminal)" },
    },
    positionals: true,
  },
  replay: {
    synopsis:
      "<function> (--from-seq n | --since <time|duration>) [--until <seq|time|duration>]\n[--subject filter] [--limit n] [--dry-run] [--key name]",
    summary:
      "run past events of the function's stream again, through that\nfunction alone; run again, it copies nothing twice (use a new\n--key to replay the same events once more)",
    options: {
      "from-seq": { type: "string", value: "n", description: "start at this sequence of the function's stream" },
      since: { type: "string", value: "time|duration", description: "start at an ISO time, or a duration before now (2h)" },
      until: { type: "string", value: "seq|time|duration", description: "stop after this sequence, or at this time" },
      subject: { type: "string", value: "filter", description: "only events on subjects this filter covers (within the function's)" },
      limit: { type: "string", value: "n", description: "copy at most n events" },
      "dry-run": { type: "boolean", description: "count what would be replayed; publish nothing" },
      key: { type: "string", value: "name", description: "a new key replays events already replayed once more" },
    },
    positionals: true,
  },
  pause: {
    synopsis: "<function> [--reason text]",
    summary: "stop the function on every host (in-flight invocations finish)",
    options: {
      reason: { type: "string", value: "text", description: "why, shown by jetfn status and /functions" },
    },
    positionals: true,
  },
  resume: {
    synopsis: "<function>",
    summary: "start it again on every host",
    options: {},
    positionals: true,
  },
  status: {
    synopsis: "[--json] [--watch]",
    summary: "every running host and its functions, from the jetfn service",
    options: {
      json: { type: "boolean", description: "the fleet as JSON" },
      watch: { type: "boolean", description: "refresh every 2 s until Ctrl-C" },
    },
    positionals: false,
  },
  console: {
    synopsis: "[--port 8090] [--host 127.0.0.1]",
    summary:
      "serve the web console: the fleet live, dead letters, pause and resume,\nredrive, replay; beyond loopback it needs JETFN_CONSOLE_TOKEN",
    options: {
      port: { type: "string", value: "port", description: "the port to listen on (default 8090; 0 for any free one)" },
      host: { type: "string", value: "address", description: "the address to bind (default 127.0.0.1)" },
    },
    positionals: false,
  },
} as const satisfies Record<string, CommandSpec>;

/** What the overview says besides the commands. */
export const OVERVIEW: Overview = {
  groups: {
    dlq: "dead letters: list, show, send back or remove them",
    delayed: "delayed events: list or cancel them",
    steps: "durable steps: show or forget a run's records",
  },
  footer: `Environment: NATS_URL, JETFN_CONFIG (default functions.yaml), JETFN_HTTP_PORT, LOG_LEVEL, ... (see README)
Exit codes: 0 done, 1 runtime failure (for invoke: the function answered with an error, or
no host serves it), 2 bad configuration or usage.`,
};

export type CommandName = keyof typeof COMMANDS;

/** The parsed options of the command `N`. */
export type ValuesOf<N extends CommandName> = OptionValues<(typeof COMMANDS)[N]["options"]>;
