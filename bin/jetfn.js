#!/usr/bin/env node
// The jetfn CLI. The runtime is TypeScript run through tsx, so `npm ci && npm start`
// needs no build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../runtime/cli.ts");
process.exitCode = await main(process.argv.slice(2));
// Whatever is left (a hung handler's timers) must not keep a finished command alive.
setTimeout(() => process.exit(), 1000).unref();
