#!/usr/bin/env node
import { processIo, runCli } from "./cli.js";

const controller = new AbortController();
process.once("SIGINT", () => controller.abort(new Error("interrupted")));
process.exitCode = await runCli(process.argv.slice(2), processIo(controller.signal));
