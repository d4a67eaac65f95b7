// What every matrix-js-sdk scenario here shares: step lines on stdout, a FAIL line and exit status 1 on any
// failure, the last requests of every client, bounded waits on what a client's sync loop delivered, and
// registering the way Element does. Each scenario imports this and calls `runScenario`.

// matrix-js-sdk 43 declares Node 22; on Node 20 this is the only missing piece.
Promise.withResolvers ??= function () { let resolve, reject; const promise = new this((a, b) => { resolve = a; reject = b; }); return { promise, resolve, reject }; };

import { randomBytes, webcrypto } from "node:crypto";

// The wasm crypto and the SDK use Web Crypto; Node 20 has it as a global already, older builds may not.
globalThis.crypto ??= webcrypto;

import { createClient } from "matrix-js-sdk";

export const SCENARIO_MS = 180_000;
export const PASSWORD = "correct horse battery staple";
let waitMs = 20_000;

if (!process.env.INTEROP_JS_VERBOSE) {
    // The SDK (and the wasm crypto) log every request, and every retry of a failing one, through console;
    // our step lines and the FAIL line (with the error the SDK raised) say what went wrong.
    for (const method of ["log", "info", "debug", "trace", "warn", "error"]) console[method] = () => {};
}

export function say(line) {
    process.stdout.write(`${line}\n`);
}

export class ScenarioError extends Error {}

export function check(condition, message) {
    if (!condition) throw new ScenarioError(message);
}

// The last requests of all clients, printed on failure: what the SDK asked just before it went wrong.
const REQUEST_LOG_SIZE = 60;
const requestLog = [];

export function recordingFetch(who) {
    return async (input, init) => {
        const started = performance.now();
        const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
        const line = `${who} ${init?.method ?? "GET"} ${url.pathname.replace("/_matrix/client", "")}`;
        const remember = (outcome) => {
            requestLog.push(`${line} -> ${outcome} (${Math.round(performance.now() - started)} ms)`);
            if (requestLog.length > REQUEST_LOG_SIZE) requestLog.shift();
        };
        try {
            const response = await fetch(input, init);
            remember(response.status);
            return response;
        } catch (error) {
            remember(error.name);
            throw error;
        }
    };
}

/** What one client's sync loop (and crypto) delivered, as {kind, roomId, data} items, with bounded waits. */
export class Observed {
    constructor(name) {
        this.name = name;
        this.items = [];
        this.waiters = new Set();
    }

    mark() {
        return this.items.length;
    }

    record(kind, roomId, data) {
        this.items.push({ kind, roomId, data });
        for (const waiter of this.waiters) waiter();
    }

    waitFor(description, predicate, since = 0, timeoutMs = waitMs) {
        return new Promise((resolve, reject) => {
            const scan = () => {
                for (const item of this.items.slice(since)) {
                    if (item.kind === "sync-error") {
                        finish();
                        reject(new ScenarioError(`${this.name}'s sync loop failed: ${item.data}`));
                        return;
                    }
                    if (predicate(item)) {
                        finish();
                        resolve(item.data);
                        return;
                    }
                }
            };
            const timer = setTimeout(() => {
                finish();
                const last = this.items.slice(-10).map((item) => `${item.kind}:${describe(item.data)}`);
                reject(new ScenarioError(
                    `${this.name} did not see ${description} within ${timeoutMs / 1000}s; last seen: ${last.join(", ")}`,
                ));
            }, timeoutMs);
            const finish = () => {
                clearTimeout(timer);
                this.waiters.delete(scan);
            };
            this.waiters.add(scan);
            scan();
        });
    }
}

function describe(data) {
    if (data && typeof data.getType === "function") {
        const failure = data.isDecryptionFailure?.() ? ` (undecryptable: ${data.decryptionFailureReason})` : "";
        return `${data.getType()}${failure}`;
    }
    return typeof data === "string" ? data : typeof data;
}

/** Poll a (possibly asynchronous) condition on client state the SDK updates on its own; fail after `timeoutMs`. */
export async function eventually(condition, describeWanted, timeoutMs = waitMs, pollMs = 100) {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
        if (await condition()) return;
        check(performance.now() < deadline, `timed out after ${timeoutMs / 1000}s waiting for ${await describeWanted()}`);
        await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
}

/** Register like Element does: learn the UIA session (and that m.login.dummy is offered) from a 401, then
 *  complete m.login.dummy. `username` defaults to `<prefix>-<tag>-<random>`. */
export async function register(baseUrl, prefix, tag = "js") {
    const anonymous = createClient({ baseUrl, fetchFn: recordingFetch(`${prefix}(register)`) });
    const username = `${prefix}-${tag}-${randomBytes(4).toString("hex")}`;
    const request = { username, password: PASSWORD, initial_device_display_name: `${prefix} js-sdk` };
    let session;
    try {
        await anonymous.registerRequest(request);
        throw new ScenarioError("register without auth succeeded; expected a 401 with UIA flows");
    } catch (error) {
        if (error instanceof ScenarioError) throw error;
        check(error.httpStatus === 401, `register without auth: expected 401, got ${error.httpStatus} ${error.message}`);
        const flows = error.data?.flows ?? [];
        check(flows.some((flow) => flow.stages?.includes("m.login.dummy")), `no m.login.dummy flow in ${JSON.stringify(flows)}`);
        session = error.data.session;
        check(typeof session === "string", "the 401 carries no UIA session");
    }
    const registered = await anonymous.registerRequest({ ...request, auth: { type: "m.login.dummy", session } });
    for (const field of ["user_id", "access_token", "device_id"]) {
        check(typeof registered[field] === "string", `register response lacks ${field}`);
    }
    return { ...registered, username };
}

/** A second login of an existing user: a new device with no keys of its own yet. */
export async function login(baseUrl, name, username) {
    const anonymous = createClient({ baseUrl, fetchFn: recordingFetch(`${name}(login)`) });
    const response = await anonymous.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: username },
        password: PASSWORD,
        initial_device_display_name: `${name} js-sdk`,
    });
    for (const field of ["user_id", "access_token", "device_id"]) {
        check(typeof response[field] === "string", `login response lacks ${field}`);
    }
    return response;
}

/** Run `scenario(baseUrl, step, clients)` with a deadline; `label` names its lines ("js", "js e2ee", ...).
 *  Exits the process: 0 when every step passed, 1 with a FAIL line and the last requests otherwise. */
export async function runScenario({ label, script, scenario, defaultWaitMs = 20_000 }) {
    waitMs = defaultWaitMs;
    const baseUrl = process.argv[2];
    if (!baseUrl) {
        say(`usage: node ${script} BASE_URL`);
        process.exit(2);
    }
    const step = async (name, action) => {
        const started = performance.now();
        try {
            await action();
        } catch (error) {
            error.message = `step '${name}': ${error.message}`;
            throw error;
        }
        say(`${label} step ok: ${name} (${Math.round(performance.now() - started)} ms)`);
    };
    const clients = [];
    const started = performance.now();
    let deadline;
    let status = 0;
    try {
        await Promise.race([
            scenario(baseUrl.replace(/\/$/, ""), step, clients),
            new Promise((_, reject) => {
                deadline = setTimeout(() => reject(new ScenarioError(`scenario exceeded ${SCENARIO_MS / 1000}s`)), SCENARIO_MS);
            }),
        ]);
        say(`${label} scenario total: ${Math.round(performance.now() - started)} ms`);
    } catch (error) {
        const where = error instanceof ScenarioError ? "" : ` (${error.name}${error.httpStatus ? ` HTTP ${error.httpStatus}` : ""})`;
        say(`FAIL${where}: ${error.message}`);
        if (!(error instanceof ScenarioError) && error.stack) process.stderr.write(`${error.stack}\n`);
        say(`last requests:\n  ${requestLog.join("\n  ")}`);
        status = 1;
    } finally {
        clearTimeout(deadline);
        for (const client of clients) client.stopClient();
    }
    process.exit(status);
}
