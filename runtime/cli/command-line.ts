import { parseArgs } from "node:util";
import { UsageError } from "./common.ts";

/** One `--option` of a command, as its usage shows it and `node:util` parseArgs reads it. */
export interface OptionSpec {
  readonly type: "string" | "boolean";
  /** A one-letter alias: `H` for `-H`. */
  readonly short?: string;
  /** May be given more than once; the values come as an array. */
  readonly multiple?: boolean;
  /** The value when the option is not given (a string option's). */
  readonly default?: string;
  /** The value's placeholder in the usage: `k=v` shows as `--header <k=v>`. @default "value" */
  readonly value?: string;
  /** What it does, one line. */
  readonly description: string;
}

/** One command (`publish`) or one action of a group (`dlq list`). */
export interface CommandSpec {
  /** What follows `jetfn <name>` in its usage: `<subject> <json|@file> [--msg-id id]`. */
  readonly synopsis: string;
  /** What it does: lines as the overview shows them. */
  readonly summary: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  /**
   * Whether it takes arguments besides its options. The command checks how many (its
   * messages say which ones are missing); one that takes none is refused here.
   */
  readonly positionals: boolean;
}

/** Commands by name; an action of a group is named `<group> <action>` (`dlq list`). */
export type CommandTable = Readonly<Record<string, CommandSpec>>;

type ValueOf<O extends OptionSpec> = O extends { readonly type: "boolean" }
  ? boolean
  : O extends { readonly multiple: true }
    ? string[]
    : string;

/** The parsed options of a command: present when given or defaulted. */
export type OptionValues<Options extends Readonly<Record<string, OptionSpec>>> = {
  readonly [K in keyof Options]: Options[K] extends { readonly default: string } ? ValueOf<Options[K]> : ValueOf<Options[K]> | undefined;
};

/** A command line to run, typed by its command: switching on `command` narrows `values`. */
export type CommandRun<T extends CommandTable> = {
  [N in keyof T & string]: {
    readonly kind: "run";
    readonly command: N;
    readonly values: OptionValues<T[N]["options"]>;
    readonly positionals: string[];
  };
}[keyof T & string];

/** What a command line asks for. */
export type CommandLine<T extends CommandTable> =
  | { readonly kind: "help"; readonly text: string }
  | { readonly kind: "version" }
  | CommandRun<T>;

/** A usage error found while parsing: it carries the usage of the command it concerns. */
export class CommandLineError extends UsageError {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
  }
}

/** The option every command takes. */
const HELP: OptionSpec = { type: "boolean", short: "h", description: "print this help and exit" };

/** What the overview says besides the commands. */
export interface Overview {
  /** Lines after the command list: environment, exit codes. */
  readonly footer: string;
  /** Each group's one-line description, by group name (`dlq`). */
  readonly groups: Readonly<Record<string, string>>;
}

/**
 * Reads `argv` (without node and the script) against `table`: `--help`/`-h`/`help` anywhere
 * before `--` asks for the help of the command named (the overview with none), `--version`
 * for the version; otherwise the command and its parsed options. Throws a
 * {@link CommandLineError} for an unknown command, action or option, an option's missing
 * or unexpected value, and arguments given to a command that takes none.
 */
export function parseCommandLine<T extends CommandTable>(table: T, overview: Overview, argv: readonly string[]): CommandLine<T> {
  const overviewText = formatOverview(table, overview);
  const [first, ...rest] = argv;
  if (first === undefined) throw new CommandLineError("no command given", overviewText);
  if (first === "--version") return { kind: "version" };
  if (first === "help" || first === "--help" || first === "-h") {
    // `jetfn help dlq list` is `jetfn dlq list --help`.
    if (rest.length === 0) return { kind: "help", text: overviewText };
    const asked = parseCommandLine(table, overview, [...rest, "--help"]);
    return asked.kind === "help" ? asked : { kind: "help", text: overviewText };
  }
  const actions = actionsOf(table, first);
  if (actions.length > 0) {
    const groupUsage = formatGroupUsage(table, overview, first);
    const [action, ...args] = rest;
    if (action === undefined) throw new CommandLineError(`${first} needs ${orList(actions)}`, groupUsage);
    if (isHelpFlag(action)) return { kind: "help", text: groupUsage };
    const name = `${first} ${action}`;
    if (!Object.hasOwn(table, name)) throw new CommandLineError(`unknown ${first} action: ${action}`, groupUsage);
    return parseCommand(table, name, args);
  }
  if (!Object.hasOwn(table, first)) throw new CommandLineError(`unknown command: ${first}`, overviewText);
  return parseCommand(table, first, rest);
}

function parseCommand<T extends CommandTable>(table: T, name: string, args: readonly string[]): CommandLine<T> {
  const spec = table[name]!;
  const usage = formatCommandUsage(name, spec);
  const options = { ...parseArgsOptions(spec.options), help: { type: "boolean", short: "h" } } as const;
  // A first, lenient pass finds --help (which wins over any mistake beside it) and unknown
  // options, the way they were written (`-x`, `--json`); a value that merely looks like
  // an option (`--reason -h`) is the option's value, as in the strict pass.
  const { tokens } = parseArgs({ args: [...args], options, strict: false, allowPositionals: true, tokens: true });
  if (tokens.some((token) => token.kind === "option" && token.name === "help")) return { kind: "help", text: usage };
  const unknown = tokens.find((token) => token.kind === "option" && !Object.hasOwn(spec.options, token.name));
  if (unknown?.kind === "option") {
    throw new CommandLineError(`${name}: Unknown option '${unknown.rawName}'; ${name} takes ${flagList(spec)}`, usage);
  }
  const parsed = (() => {
    try {
      return parseArgs({ args: [...args], options, strict: true, allowPositionals: true });
    } catch (error) {
      throw new CommandLineError(`${name}: ${(error as Error).message.replaceAll("\n", " ")}`, usage);
    }
  })();
  if (!spec.positionals && parsed.positionals.length > 0) {
    throw new CommandLineError(`${name} takes no arguments, got ${parsed.positionals.join(" ")}`, usage);
  }
  const { help: _help, ...values } = parsed.values;
  return { kind: "run", command: name, values, positionals: parsed.positionals } as unknown as CommandLine<T>;
}

/** The usage of the command `name` (`publish`, `dlq list`), or of the group `dlq`; undefined for no such name. */
export function usageOf(table: CommandTable, overview: Overview, name: string): string | undefined {
  if (Object.hasOwn(table, name)) return formatCommandUsage(name, table[name]!);
  if (actionsOf(table, name).length > 0) return formatGroupUsage(table, overview, name);
  return undefined;
}

/** `jetfn --help`: every command with its synopsis and summary, then the footer. */
export function formatOverview(table: CommandTable, overview: Overview): string {
  const lines = ["Usage: jetfn <command> [options]", "", "Commands:"];
  for (const [name, spec] of Object.entries(table)) lines.push(...overviewEntry(name, spec));
  lines.push("", "jetfn <command> --help shows a command's options; jetfn --version prints the version.");
  lines.push(overview.footer);
  return lines.join("\n");
}

/** Where the summaries start in the overview (the old hand-written overview's column). */
const SUMMARY_COLUMN = 32;

function overviewEntry(name: string, spec: CommandSpec): string[] {
  const head = `  ${name}${spec.synopsis ? ` ${indentContinuation(spec.synopsis, 3 + name.length)}` : ""}`;
  const summary = spec.summary.split("\n").map((line) => " ".repeat(SUMMARY_COLUMN) + line);
  // A short synopsis shares its line with the summary's first line; a long one stands above it.
  if (!head.includes("\n") && head.length < SUMMARY_COLUMN - 1)
    return [head.padEnd(SUMMARY_COLUMN) + spec.summary.split("\n")[0], ...summary.slice(1)];
  return [...head.split("\n"), ...summary];
}

function formatCommandUsage(name: string, spec: CommandSpec): string {
  const head = `Usage: jetfn ${name}`;
  const lines = [spec.synopsis ? `${head} ${indentContinuation(spec.synopsis, head.length + 1)}` : head, ""];
  lines.push(...spec.summary.split("\n").map((line) => `  ${line}`), "", "Options:");
  const rows = [...Object.entries(spec.options), ["help", HELP] as const].map(([option, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : "    "}--${option}${o.type === "string" ? ` <${o.value ?? "value"}>` : ""}`;
    const notes = [o.multiple ? "repeatable" : "", o.default !== undefined ? `default ${o.default}` : ""].filter(Boolean);
    return [flag, notes.length > 0 ? `${o.description} (${notes.join("; ")})` : o.description] as const;
  });
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  for (const [flag, description] of rows) lines.push(`  ${flag.padEnd(width)}${description}`);
  return lines.join("\n");
}

function formatGroupUsage(table: CommandTable, overview: Overview, group: string): string {
  const actions = actionsOf(table, group);
  const lines = [`Usage: jetfn ${group} <${actions.join("|")}> [options]`, ""];
  if (overview.groups[group]) lines.push(`  ${overview.groups[group]}`, "");
  lines.push("Actions:");
  for (const action of actions) lines.push(...overviewEntry(`${group} ${action}`, table[`${group} ${action}`]!));
  lines.push("", `jetfn ${group} <action> --help shows an action's options.`);
  return lines.join("\n");
}

/** The actions of the group `name` (`list`, `show`, ... for `dlq`), in the table's order. */
function actionsOf(table: CommandTable, name: string): string[] {
  return Object.keys(table)
    .filter((key) => key.startsWith(`${name} `))
    .map((key) => key.slice(name.length + 1));
}

/** `--header (-H), --msg-id, --help (-h)`: what an unknown option's message offers instead. */
function flagList(spec: CommandSpec): string {
  const flags = Object.entries(spec.options).map(([option, o]) => `--${option}${o.short ? ` (-${o.short})` : ""}`);
  return flags.length > 0 ? `${flags.join(", ")} and --help (-h)` : "no options but --help (-h)";
}

function parseArgsOptions(options: Readonly<Record<string, OptionSpec>>) {
  return Object.fromEntries(
    Object.entries(options).map(([name, o]) => [
      name,
      {
        type: o.type,
        ...(o.short ? { short: o.short } : {}),
        ...(o.multiple ? { multiple: true } : {}),
        ...(o.default !== undefined ? { default: o.default } : {}),
      },
    ]),
  ) as Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean; default?: string }>;
}

/** A synopsis written over several lines, its later lines indented to stand under its first. */
function indentContinuation(text: string, column: number): string {
  return text.replaceAll("\n", `\n${" ".repeat(column)}`);
}

function isHelpFlag(arg: string): boolean {
  return arg === "--help" || arg === "-h";
}

function orList(items: readonly string[]): string {
  return items.length <= 1 ? items.join("") : `${items.slice(0, -1).join(", ")} or ${items.at(-1)}`;
}
