import path from "node:path";

/** One problem found in `functions.yaml` or the environment. */
export interface ConfigIssue {
  /** Absolute path of the yaml file, or `environment` for environment variables. */
  readonly file: string;
  /** 1-based line of the offending node, when known. */
  readonly line?: number;
  /** 1-based column of the offending node, when known. */
  readonly column?: number;
  /** Where in the document: `functions[2].retry.maxAttempts`, or a variable name. Empty for the whole file. */
  readonly path: string;
  readonly message: string;
}

/**
 * A start-up error in `functions.yaml` or the environment. `message` holds every issue, one
 * per line (`functions.yaml:12:14 functions[2].timeout: expected a duration like 10s, got "ten"`),
 * so printing it is enough; `issues` keeps them apart for tools.
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[], cwd: string = process.cwd()) {
    super(issues.map((issue) => formatIssue(issue, cwd)).join("\n"));
    this.issues = Object.freeze(issues.map((issue) => Object.freeze({ ...issue })));
  }
}

/**
 * Formats one issue as `file:line:column path: message`; the file is shown relative to `cwd`
 * when it lies inside it.
 */
export function formatIssue(issue: ConfigIssue, cwd: string = process.cwd()): string {
  let where = displayFile(issue.file, cwd);
  if (issue.line !== undefined) where += `:${issue.line}:${issue.column ?? 1}`;
  const at = issue.path === "" ? "" : ` ${issue.path}`;
  return `${where}${at}: ${issue.message}`;
}

function displayFile(file: string, cwd: string): string {
  if (!path.isAbsolute(file)) return file;
  const relative = path.relative(cwd, file);
  const inside = relative !== "" && !relative.startsWith("..") && !path.isAbsolute(relative);
  return inside ? relative : file;
}

/** Renders a key path in JS notation: `functions[2].retry.maxAttempts`, `config["a.b"]`. */
export function formatPath(segments: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of segments) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (typeof segment === "string" && /^[A-Za-z_$][\w$]*$/.test(segment)) {
      out += out === "" ? segment : `.${segment}`;
    } else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

/**
 * Describes a value for an error message: strings and numbers as JSON (`"ten"`, `10`), long
 * strings shortened, collections by kind. Never call this on a secret.
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a map";
  if (typeof value === "string") {
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return JSON.stringify(shown);
  }
  return String(value);
}
