#!/usr/bin/env node
// The jetfn CLI. The runtime is TypeScript: on first use (and after any change to it)
// esbuild bundles it into .jetfn/runtime/ (see build-runtime.js), in well under a second,
// and that bundle runs. So `npm ci && npm start` needs no build step, and nothing compiles
// TypeScript per file at run time.
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ensureRuntime } from "./build-runtime.js";

const outfile = path.join(await ensureRuntime(), "cli.mjs");

process.setSourceMapsEnabled(true);
const { main } = await import(pathToFileURL(outfile).href);
process.exitCode = await main(process.argv.slice(2));
// Whatever is left (a hung handler's timers) must not keep a finished command alive.
setTimeout(() => process.exit(), 1000).unref();
