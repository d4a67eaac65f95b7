// matrix-js-sdk's SlidingSync (simplified sliding sync, MSC4186) drives a client against the server.
//
//   node sliding_scenario.mjs BASE_URL
//
// Bob runs the SDK with a SlidingSync (one list, range 0-19, every state event) and the Rust crypto
// stack, so his rooms, timelines, to-device messages and device keys all come through the sliding
// sync endpoint and its extensions; Alice runs the classic /sync loop. Bob sees his invite in the
// list, joins, receives Alice's message in real time, then decrypts an encrypted one whose room key
// reached him through the to_device extension. One line per step on stdout; on any failure a line
// starting with "FAIL" and exit status 1. Set INTEROP_JS_VERBOSE=1 for the SDK's own logging.

// matrix-js-sdk 43 declares Node 22; on Node 20 this is the only missing piece.
Promise.withResolvers ??= function () { let resolve, reject; const promise = new this((a, b) => { resolve = a; reject = b; }); return { promise, resolve, reject }; };

import { randomBytes, webcrypto } from "node:crypto";

// The wasm crypto and the SDK use Web Crypto; Node 20 has it as a global already, older builds may not.
globalThis.crypto ??= webcrypto;

import { SlidingSync } from "matrix-js-sdk/lib/sliding-sync.js";
import {
    ClientEvent,
    EventType,
    KnownMembership,
    MatrixEventEvent,
    RoomEvent,
    SyncState,
    createClient,
} from "matrix-js-sdk";

const WAIT_MS = 20_000;
const SCENARIO_MS = 180_000;
const PASSWORD = "correct horse battery staple";
const MEGOLM = "m.megolm.v1.aes-sha2";

if (!process.env.INTEROP_JS_VERBOSE) {
    // The SDK and the wasm crypto log through console; our step lines and the FAIL line say what went wrong.
    for (const method of ["log", "info", "debug", "trace", "warn", "error"]) console[method] = () => {};
}

function say(line) {
    process.stdout.write(`${line}\n`);
}

class ScenarioError extends Error {}

function check(condition, message) {
    if (!condition) throw new ScenarioError(message);
}

// The last requests of all clients, printed on failure: what the SDK asked just before it went wrong.
const REQUEST_LOG_SIZE = 60;
const requestLog = [];

function recordingFetch(who) {
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

/** What one client's sync loop and crypto have delivered, as {kind, roomId, data} items, with bounded waits. */
class Observed {
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

    waitFor(description, predicate, since = 0, timeoutMs = WAIT_MS) {
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

/** Poll an asynchronous condition; fail after `timeoutMs`. */
async function eventually(condition, describeWanted, timeoutMs = WAIT_MS) {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
        if (await condition()) return;
        check(performance.now() < deadline, `timed out after ${timeoutMs / 1000}s waiting for ${await describeWanted()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
}

/** Register like Element does: learn the UIA session from a 401, then complete m.login.dummy. */
async function register(baseUrl, prefix) {
    const anonymous = createClient({ baseUrl, fetchFn: recordingFetch(`${prefix}(register)`) });
    const username = `${prefix}-e2ee-${randomBytes(4).toString("hex")}`;
    const request = { username, password: PASSWORD, initial_device_display_name: `${prefix} js-sdk` };
    let session;
    try {
        await anonymous.registerRequest(request);
        throw new ScenarioError("register without auth succeeded; expected a 401 with UIA flows");
    } catch (error) {
        if (error instanceof ScenarioError) throw error;
        check(error.httpStatus === 401, `register without auth: expected 401, got ${error.httpStatus} ${error.message}`);
        session = error.data?.session;
        check(typeof session === "string", "the 401 carries no UIA session");
    }
    const registered = await anonymous.registerRequest({ ...request, auth: { type: "m.login.dummy", session } });
    return { ...registered, username };
}

/** A second login of an existing user: a new device with no keys of its own yet. */
async function login(baseUrl, name, username) {
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

const LIST = { ranges: [[0, 19]], timeline_limit: 10, required_state: [["*", "*"]] };

/** A logged-in client with Rust crypto whose sync loop is classic /sync, or sliding sync when `sliding`. */
async function startClient(baseUrl, name, session, sliding) {
    const client = createClient({
        baseUrl,
        userId: session.user_id,
        accessToken: session.access_token,
        deviceId: session.device_id,
        fetchFn: recordingFetch(name),
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const seen = new Observed(name);
    client.on(RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
        if (!toStartOfTimeline) seen.record("timeline", room?.roomId, event);
    });
    client.on(MatrixEventEvent.Decrypted, (event) => seen.record("decrypted", event.getRoomId(), event));
    client.on(RoomEvent.MyMembership, (room, membership) => seen.record("my-membership", room.roomId, membership));
    client.on(ClientEvent.Sync, (state, _previous, data) => {
        if (state === SyncState.Error) seen.record("sync-error", null, String(data?.error?.message ?? data?.error));
        else seen.record("sync", null, state);
    });
    let slidingSync;
    if (sliding) {
        slidingSync = new SlidingSync(baseUrl, new Map([["all", LIST]]), { timeline_limit: 10, required_state: [["*", "*"]] },
            client, 30_000);
        client.startClient({ slidingSync });
    } else {
        client.startClient({ initialSyncLimit: 20 });
    }
    await seen.waitFor("its first sync", (item) => item.kind === "sync" && item.data === SyncState.Prepared);
    return { client, seen, slidingSync, userId: session.user_id, deviceId: session.device_id };
}

const decryptedText = (roomId, eventId, body) => (item) => {
    if (item.kind !== "decrypted" || item.roomId !== roomId || item.data.getId() !== eventId) return false;
    if (item.data.isDecryptionFailure()) return false;
    const content = item.data.getContent();
    return item.data.getType() === EventType.RoomMessage && content.body === body;
};

const isMembership = (roomId, userId, membership) => (item) =>
    item.kind === "timeline" && item.roomId === roomId && item.data.getType() === EventType.RoomMember &&
    item.data.getStateKey() === userId && item.data.getContent().membership === membership;

async function step(name, action) {
    const started = performance.now();
    try {
        await action();
    } catch (error) {
        error.message = `step '${name}': ${error.message}`;
        throw error;
    }
    say(`js sliding step ok: ${name} (${Math.round(performance.now() - started)} ms)`);
}

async function joinInvitedRoom(alice, bob, options) {
    const aliceMark = alice.seen.mark();
    const bobMark = bob.seen.mark();
    const { room_id: roomId } = await alice.client.createRoom({ preset: "private_chat", invite: [bob.userId], ...options });
    await bob.seen.waitFor("his invite through the sliding list", (item) =>
        item.kind === "my-membership" && item.roomId === roomId && item.data === KnownMembership.Invite, bobMark);
    await bob.client.joinRoom(roomId);
    await alice.seen.waitFor("bob's join", isMembership(roomId, bob.userId, KnownMembership.Join), aliceMark);
    await bob.seen.waitFor("his own join through sliding sync", isMembership(roomId, bob.userId, KnownMembership.Join),
        bobMark);
    return roomId;
}

async function scenario(baseUrl, clients) {
    let alice, bob, plainRoom, secretRoom;

    await step("register alice (classic /sync) and bob (sliding sync), both with rust crypto", async () => {
        const [a, b] = await Promise.all([register(baseUrl, "alice"), register(baseUrl, "bob")]);
        alice = await startClient(baseUrl, "alice", a, false);
        clients.push(alice.client);
        bob = await startClient(baseUrl, "bob", b, true);
        clients.push(bob.client);
        await eventually(async () => {
            const devices = await alice.client.getCrypto().getUserDeviceInfo([bob.userId], true);
            return devices.get(bob.userId)?.has(bob.deviceId);
        }, async () => `alice to see bob's device ${bob.deviceId} in /keys/query`);
    });

    await step("bob's list shows alice's invite; he joins and the room is named", async () => {
        plainRoom = await joinInvitedRoom(alice, bob, { name: "Huiskamer" });
        await eventually(async () => bob.client.getRoom(plainRoom)?.name === "Huiskamer",
            async () => `bob's room to be named Huiskamer, not ${bob.client.getRoom(plainRoom)?.name}`);
        const count = bob.slidingSync.getListData("all")?.joinedCount;
        check(count === 1, `the list counts ${count} rooms, expected 1`);
    });

    await step("alice's message reaches bob in real time", async () => {
        const mark = bob.seen.mark();
        const { event_id: eventId } = await alice.client.sendMessage(plainRoom, { msgtype: "m.text", body: "Hallo Bob" });
        const event = await bob.seen.waitFor("alice's message", (item) =>
            item.kind === "timeline" && item.roomId === plainRoom && item.data.getId() === eventId, mark);
        check(event.getContent().body === "Hallo Bob", `the message arrived as ${JSON.stringify(event.getContent())}`);
    });

    await step("alice's encrypted message decrypts at bob (keys through the to_device and e2ee extensions)", async () => {
        secretRoom = await joinInvitedRoom(alice, bob, {
            name: "Versleuteld",
            initial_state: [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: MEGOLM } }],
        });
        const mark = bob.seen.mark();
        const { event_id: eventId } = await alice.client.sendMessage(secretRoom, { msgtype: "m.text", body: "Geheim" });
        const event = await bob.seen.waitFor("alice's message, decrypted", decryptedText(secretRoom, eventId, "Geheim"), mark);
        check(event.getWireType() === EventType.RoomMessageEncrypted, `the message arrived as ${event.getWireType()}`);
    });
}

async function main() {
    const baseUrl = process.argv[2];
    if (!baseUrl) {
        say("usage: node sliding_scenario.mjs BASE_URL");
        return 2;
    }
    const clients = [];
    const started = performance.now();
    let deadline;
    try {
        await Promise.race([
            scenario(baseUrl.replace(/\/$/, ""), clients),
            new Promise((_, reject) => {
                deadline = setTimeout(() => reject(new ScenarioError(`scenario exceeded ${SCENARIO_MS / 1000}s`)), SCENARIO_MS);
            }),
        ]);
        say(`js sliding scenario total: ${Math.round(performance.now() - started)} ms`);
        return 0;
    } catch (error) {
        const where = error instanceof ScenarioError ? "" : ` (${error.name}${error.httpStatus ? ` HTTP ${error.httpStatus}` : ""})`;
        say(`FAIL${where}: ${error.message}`);
        if (!(error instanceof ScenarioError) && error.stack) process.stderr.write(`${error.stack}\n`);
        say(`last requests:\n  ${requestLog.join("\n  ")}`);
        return 1;
    } finally {
        clearTimeout(deadline);
        for (const client of clients) client.stopClient();
    }
}

process.exit(await main());
