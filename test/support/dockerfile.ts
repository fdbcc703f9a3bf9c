import { execSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * The repository's Dockerfile, read and replayed without a Docker engine. Only the syntax
 * our Dockerfile uses is understood; anything else throws rather than being skipped, so a
 * new instruction in the Dockerfile cannot pass these tests unreplayed.
 */
export interface Instruction {
  readonly op: string;
  readonly args: string;
}

export interface Stage {
  /** `AS` name, if any. */
  readonly name: string | undefined;
  readonly image: string;
  readonly instructions: readonly Instruction[];
}

/** The stages of a Dockerfile, continuation lines joined, comments dropped. */
export function parseDockerfile(file: string): Stage[] {
  const lines = readFileSync(file, "utf8")
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"));
  const stages: { name: string | undefined; image: string; instructions: Instruction[] }[] = [];
  for (const line of lines) {
    const [op = "", ...rest] = line.split(/\s+/);
    const args = rest.join(" ");
    if (op.toUpperCase() === "FROM") {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!from) throw new Error(`Dockerfile: cannot read FROM ${args}`);
      stages.push({ image: from[1]!, name: from[2], instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`Dockerfile: ${op} before FROM`);
    stage.instructions.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

/** An exec-form (JSON array) command; shell form would need a shell in the image and a PID 1 that is not node. */
export function execForm(args: string): string[] {
  const command = JSON.parse(args) as unknown;
  if (!Array.isArray(command) || !command.every((part) => typeof part === "string")) throw new Error(`not exec form: ${args}`);
  return command;
}

/** The stage's HEALTHCHECK: its options (`--interval=15s` as `interval: "15s"`) and command. */
export function healthcheck(stage: Stage): { options: Record<string, string>; command: string[] } | undefined {
  const instruction = stage.instructions.findLast((i) => i.op === "HEALTHCHECK");
  if (!instruction) return undefined;
  const match = /^((?:--\S+\s+)*)CMD\s+(.*)$/.exec(instruction.args);
  if (!match) throw new Error(`Dockerfile: cannot read HEALTHCHECK ${instruction.args}`);
  const options = Object.fromEntries(
    match[1]!
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((flag) => flag.replace(/^--/, "").split("=") as [string, string]),
  );
  return { options, command: execForm(match[2]!) };
}

/** Ports named by the stage's EXPOSE instructions. */
export function exposedPorts(stage: Stage): number[] {
  return stage.instructions.filter((i) => i.op === "EXPOSE").flatMap((i) => i.args.split(/\s+/).map((port) => Number.parseInt(port, 10)));
}

/** A stage after its replay: a folder standing for its WORKDIR, and what it configures for run time. */
export interface ReplayedStage {
  readonly name: string | undefined;
  /** The stage's files; the last stage's folder is `<root><WORKDIR>`, earlier ones were moved aside. */
  readonly dir: string;
  readonly workdir: string;
  readonly env: Record<string, string>;
  readonly user: string | undefined;
  readonly cmd: string[] | undefined;
  readonly healthcheck: string[] | undefined;
}

/**
 * Replays each stage of `dockerfile` under a new temporary folder `root`: COPY from
 * `context` (or, with `--from`, from an earlier stage's files), RUN with the stage's ENV on
 * top of PATH and HOME. A stage runs in `<root><WORKDIR>`, so stages with the same WORKDIR
 * see the same absolute path, as in the image (build outputs may record absolute paths); once
 * a stage is done, its folder moves to `<root>/stages/<n>` for the next one's `COPY --from`.
 * Every path must lie under the stage's WORKDIR. BuildKit's cache mounts are dropped: they
 * only keep npm's cache out of the image.
 */
export function replayDockerfile(dockerfile: string, context: string): { root: string; stages: ReplayedStage[] } {
  const root = mkdtempSync(path.join(tmpdir(), "jetfn-image-"));
  const parsed = parseDockerfile(dockerfile);
  const replayed: ReplayedStage[] = [];
  for (const [index, stage] of parsed.entries()) {
    let dir = "";
    let workdir: string | undefined;
    const env: Record<string, string> = {};
    let user: string | undefined;
    let cmd: string[] | undefined;
    const inside = (target: string): string => {
      if (!workdir) throw new Error("Dockerfile: a step before WORKDIR");
      const absolute = path.posix.resolve(workdir, target);
      const relative = path.posix.relative(workdir, absolute);
      if (relative.startsWith("..")) throw new Error(`Dockerfile: ${target} is outside WORKDIR ${workdir}`);
      return path.join(dir, relative);
    };
    for (const { op, args } of stage.instructions) {
      switch (op) {
        case "WORKDIR":
          if (workdir !== undefined || !args.startsWith("/")) throw new Error(`Dockerfile: one absolute WORKDIR per stage, got ${args}`);
          workdir = args;
          dir = path.join(root, workdir);
          mkdirSync(dir, { recursive: true });
          break;
        case "ENV":
          for (const pair of args.split(/\s+/)) {
            const eq = pair.indexOf("=");
            if (eq <= 0) throw new Error(`Dockerfile: ENV expects key=value, got ${pair}`);
            env[pair.slice(0, eq)] = pair.slice(eq + 1);
          }
          break;
        case "COPY": {
          const parts = args.split(/\s+/);
          let from: ReplayedStage | undefined;
          if (parts[0]?.startsWith("--from=")) {
            const name = parts.shift()!.slice("--from=".length);
            from = replayed.find((s) => s.name === name) ?? replayed[Number(name)];
            if (!from) throw new Error(`Dockerfile: COPY --from=${name}: no such earlier stage`);
          }
          if (parts.some((part) => part.startsWith("--"))) throw new Error(`Dockerfile: COPY flag not replayed: ${args}`);
          const dest = parts.pop()!;
          const target = inside(dest);
          const intoFolder = dest.endsWith("/") || parts.length > 1;
          for (const source of parts) {
            if (from && !source.startsWith(`${from.workdir}/`))
              throw new Error(`Dockerfile: COPY --from source ${source} is outside ${from.workdir}`);
            const origin = from ? path.join(from.dir, path.posix.relative(from.workdir, source)) : path.join(context, source);
            // A folder's contents go into the target; a file goes into it, or becomes it.
            const to = statSync(origin).isDirectory() || !intoFolder ? target : path.join(target, path.basename(source));
            cpSync(origin, to, { recursive: true, preserveTimestamps: true });
          }
          break;
        }
        case "RUN":
          execSync(args.replace(/--mount=\S+\s+/g, ""), {
            cwd: dir,
            env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
            stdio: "pipe",
          });
          break;
        case "USER":
          user = args;
          break;
        case "CMD":
          cmd = execForm(args);
          break;
        case "EXPOSE":
        case "HEALTHCHECK":
          break; // read by exposedPorts() and healthcheck()
        default:
          throw new Error(`Dockerfile: ${op} is not replayed`);
      }
    }
    if (!workdir) throw new Error(`Dockerfile: stage ${stage.name ?? index} has no WORKDIR`);
    if (index < parsed.length - 1) {
      const aside = path.join(root, "stages", String(index));
      mkdirSync(path.dirname(aside), { recursive: true });
      renameSync(dir, aside);
      dir = aside;
    }
    replayed.push({ name: stage.name, dir, workdir, env, user, cmd, healthcheck: healthcheck(stage)?.command });
  }
  return { root, stages: replayed };
}
