import { type DestinationStream, type Logger as PinoLogger, pino } from "pino";
import { PinoPretty } from "pino-pretty";
import type { CompiledEnv } from "../config/types.ts";

export type Logger = PinoLogger;

/**
 * The host's structured logger: one JSON object per line on stdout, or coloured
 * human-readable lines when stdout is a terminal. Payloads and secrets are never logged.
 */
export function createLogger(level: CompiledEnv["logLevel"], destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: "jetfn" },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (destination) return pino(options, destination);
  if (process.stdout.isTTY) return pino(options, PinoPretty({ sync: true, colorize: true, ignore: "service" }));
  return pino(options, pino.destination({ dest: 1, sync: true }));
}
