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

import { check, eventually, Observed, recordingFetch, register, runScenario } from "./harness.mjs";

const MEGOLM = "m.megolm.v1.aes-sha2";

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

async function scenario(baseUrl, step, clients) {
    let alice, bob, plainRoom, secretRoom;

    await step("register alice (classic /sync) and bob (sliding sync), both with rust crypto", async () => {
        const [a, b] = await Promise.all([register(baseUrl, "alice", "e2ee"), register(baseUrl, "bob", "e2ee")]);
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

await runScenario({ label: "js sliding", script: "sliding_scenario.mjs", scenario, defaultWaitMs: 20_000 });
