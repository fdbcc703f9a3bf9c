/**
 * The CLI's one argument parser, read against the real command table: help and version,
 * options typed per command, and the usage errors (exit 2) with what they name.
 */
import { describe, expect, it } from "vitest";
import { CommandLineError, formatOverview, parseCommandLine, usageOf } from "../../runtime/cli/command-line.ts";
import { COMMANDS, OVERVIEW } from "../../runtime/cli/commands.ts";

const parse = (...argv: string[]) => parseCommandLine(COMMANDS, OVERVIEW, argv);

/** The usage error `argv` throws. */
function refused(...argv: string[]): CommandLineError {
  try {
    parse(...argv);
  } catch (error) {
    expect(error).toBeInstanceOf(CommandLineError);
    return error as CommandLineError;
  }
  throw new Error(`${argv.join(" ")} parsed`);
}

describe("parseCommandLine", () => {
  it("parses a command's options and arguments", () => {
    expect(parse("publish", "orders.created", "{}", "-H", "a=1", "--header", "b=2", "--msg-id", "m-1")).toEqual({
      kind: "run",
      command: "publish",
      values: { header: ["a=1", "b=2"], "msg-id": "m-1" },
      positionals: ["orders.created", "{}"],
    });
    expect(parse("invoke", "quote", "{}")).toMatchObject({ command: "invoke", values: { timeout: "30s" } });
    expect(parse("dlq", "purge", "fn", "--seq", "3", "-y")).toMatchObject({
      command: "dlq purge",
      values: { seq: ["3"], yes: true },
      positionals: ["fn"],
    });
    expect(parse("new", "ship", "--subject", "shop.paid", "--route", "POST /ship")).toMatchObject({
      command: "new",
      values: { subject: "shop.paid", route: "POST /ship" },
      positionals: ["ship"],
    });
    // After --, an option-looking word is an argument.
    expect(parse("publish", "s", "--", "--help")).toMatchObject({ kind: "run", positionals: ["s", "--help"] });
  });

  it("answers --help and -h with the command's usage, before any other check", () => {
    for (const [name, spec] of Object.entries(COMMANDS)) {
      for (const flag of ["--help", "-h"]) {
        const line = parse(...name.split(" "), flag);
        expect(line.kind, `${name} ${flag}`).toBe("help");
        if (line.kind !== "help") continue;
        expect(line.text).toContain(`Usage: jetfn ${name}`);
        for (const option of Object.keys(spec.options)) expect(line.text).toContain(`--${option}`);
        expect(line.text).toContain("-h, --help");
      }
    }
    // An unknown option or a missing argument beside it does not stand in the way.
    expect(parse("publish", "--bogus", "--help")).toMatchObject({ kind: "help" });
    expect(parse("replay", "-h")).toMatchObject({ kind: "help" });
    expect(parse("help", "dlq", "list")).toEqual(parse("dlq", "list", "--help"));
  });

  it("answers the group's usage for dlq --help, and the overview for help, --help and -h", () => {
    const group = parse("dlq", "--help");
    expect(group.kind).toBe("help");
    if (group.kind === "help") {
      expect(group.text).toContain("Usage: jetfn dlq <list|show|redrive|purge>");
      for (const action of ["list", "show", "redrive", "purge"]) expect(group.text).toContain(`  dlq ${action} `);
    }
    const overview = formatOverview(COMMANDS, OVERVIEW);
    for (const argv of [["help"], ["--help"], ["-h"]]) expect(parse(...argv)).toEqual({ kind: "help", text: overview });
    for (const name of [
      "start",
      "dev",
      "new",
      "build",
      "validate",
      "publish",
      "invoke",
      "dlq list",
      "replay",
      "pause",
      "resume",
      "status",
    ]) {
      expect(overview).toContain(`\n  ${name}`);
    }
    expect(overview).toContain("Exit codes: 0 done, 1 runtime failure");
  });

  it("answers --version", () => {
    expect(parse("--version")).toEqual({ kind: "version" });
  });

  it("names the command and its options for an unknown option", () => {
    const error = refused("dlq", "purge", "fn", "--json");
    expect(error.message).toBe("dlq purge: Unknown option '--json'; dlq purge takes --seq, --before, --yes (-y) and --help (-h)");
    expect(error.usage).toContain("Usage: jetfn dlq purge");
    expect(refused("publish", "s", "{}", "-x").message).toBe(
      "publish: Unknown option '-x'; publish takes --header (-H), --msg-id, --delay, --at and --help (-h)",
    );
    expect(refused("start", "--port", "80").message).toBe("start: Unknown option '--port'; start takes no options but --help (-h)");
    // An option of another action is unknown to this one.
    expect(refused("dlq", "show", "fn", "1", "--before", "1h").message).toContain("dlq show: Unknown option '--before'");
  });

  it("refuses unknown commands and actions, missing values and arguments to a command that takes none", () => {
    expect(refused().message).toBe("no command given");
    expect(refused("launch")).toMatchObject({ message: "unknown command: launch", usage: formatOverview(COMMANDS, OVERVIEW) });
    expect(refused("dlq").message).toBe("dlq needs list, show, redrive or purge");
    expect(refused("dlq", "prune").message).toBe("unknown dlq action: prune");
    expect(refused("publish", "s", "{}", "--msg-id").message).toBe("publish: Option '--msg-id <value>' argument missing");
    expect(refused("status", "--json=yes").message).toContain("status: Option '--json' does not take an argument");
    expect(refused("pause", "fn", "--reason", "-h").message).toContain("pause: Option '--reason' argument is ambiguous.");
    expect(refused("validate", "functions.yaml").message).toBe("validate takes no arguments, got functions.yaml");
    expect(refused("help", "launch").message).toBe("unknown command: launch");
  });
});

describe("usageOf", () => {
  it("gives a command's, an action's and a group's usage", () => {
    expect(usageOf(COMMANDS, OVERVIEW, "invoke")).toContain("--timeout <duration>  how long to wait for the answer (default 30s)");
    expect(usageOf(COMMANDS, OVERVIEW, "dlq redrive")).toContain("--seq <n>  only the dead letter JETFN_DLQ#n (repeatable)");
    expect(usageOf(COMMANDS, OVERVIEW, "dlq")).toContain("Actions:");
    expect(usageOf(COMMANDS, OVERVIEW, "nothing")).toBeUndefined();
  });

  it("puts a long synopsis's later lines under its first", () => {
    const replay = usageOf(COMMANDS, OVERVIEW, "replay")!.split("\n");
    expect(replay[0]).toMatch(/^Usage: jetfn replay <function> \(--from-seq n/);
    expect(replay[1]).toBe(`${" ".repeat("Usage: jetfn replay ".length)}[--subject filter] [--limit n] [--dry-run] [--key name]`);
  });
});
