// Two matrix-js-sdk users chat in a room; every effect is observed through the SDK's own sync loop.
//
//   node scenario.mjs BASE_URL
//
// Alice creates a room and invites Bob; Bob joins; they exchange messages; Alice edits hers
// (m.replace), Bob reacts (m.annotation) and replies in a thread; Alice redacts a message; Bob types
// and Alice reads; Bob scrolls back to the start of the room; Bob leaves. One line per step on stdout;
// on any failure a line starting with "FAIL" and exit status 1.
// Set INTEROP_JS_VERBOSE=1 to see the SDK's own logging.

import { randomBytes } from "node:crypto";

import {
    ClientEvent,
    Direction,
    EventType,
    KnownMembership,
    Method,
    RelationType,
    RoomEvent,
    RoomMemberEvent,
    SyncState,
    createClient,
} from "matrix-js-sdk";

import { Observed, check, eventually, recordingFetch, register, runScenario } from "./harness.mjs";

function describeThread(room, rootId) {
    const thread = room.getThread(rootId);
    if (!thread) return `no thread; room has threads ${JSON.stringify(room.getThreads().map((t) => t.id))}`;
    return `thread of ${rootId} with length ${thread.length}, initialEventsFetched ${thread.initialEventsFetched}, ` +
        `events ${JSON.stringify(thread.events.map((e) => `${e.getId()} ${e.getType()}`))}`;
}

/** A logged-in client whose startClient() sync loop feeds an Observed through the SDK's events. */
async function startSyncingClient(baseUrl, name, registered) {
    const client = createClient({
        baseUrl,
        userId: registered.user_id,
        accessToken: registered.access_token,
        deviceId: registered.device_id,
        fetchFn: recordingFetch(name),
    });
    const seen = new Observed(name);
    client.on(RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
        // Back-pagination also emits Timeline; the scenario only waits on what the live sync delivers.
        if (!toStartOfTimeline) seen.record("timeline", room?.roomId, event);
    });
    client.on(RoomEvent.MyMembership, (room, membership) => seen.record("my-membership", room.roomId, membership));
    client.on(RoomEvent.Redaction, (event, room) => seen.record("redaction", room.roomId, event));
    client.on(RoomEvent.Receipt, (event, room) => seen.record("receipt", room.roomId, event));
    client.on(RoomMemberEvent.Typing, (event, member) => seen.record("typing", member.roomId, member));
    client.on(ClientEvent.Sync, (state, _previous, data) => {
        if (state === SyncState.Error) seen.record("sync-error", null, String(data?.error?.message ?? data?.error));
        else seen.record("sync", null, state);
    });
    client.startClient({ initialSyncLimit: 20, threadSupport: true });
    await seen.waitFor("its initial sync", (item) => item.kind === "sync" && item.data === SyncState.Prepared);
    return { client, seen, userId: registered.user_id };
}

const isEvent = (roomId, eventId) => (item) =>
    item.kind === "timeline" && item.roomId === roomId && item.data.getId() === eventId;

const isMembership = (roomId, userId, membership) => (item) =>
    item.kind === "timeline" && item.roomId === roomId && item.data.getType() === EventType.RoomMember &&
    item.data.getStateKey() === userId && item.data.getContent().membership === membership;

async function scenario(baseUrl, step, clients) {
    let alice, bob, roomId, hello, hi, edit, reaction, inThread, oops, redaction, question;

    await step("register both users and start their sync loops", async () => {
        const [a, b] = await Promise.all([register(baseUrl, "alice"), register(baseUrl, "bob")]);
        [alice, bob] = await Promise.all([startSyncingClient(baseUrl, "alice", a), startSyncingClient(baseUrl, "bob", b)]);
        clients.push(alice.client, bob.client);
    });

    await step("alice creates a room", async () => {
        const mark = alice.seen.mark();
        ({ room_id: roomId } = await alice.client.createRoom({ name: "Huiskamer", topic: "Gezellig", preset: "private_chat" }));
        await alice.seen.waitFor("the room's name event", (item) =>
            item.kind === "timeline" && item.roomId === roomId && item.data.getType() === EventType.RoomName &&
            item.data.getContent().name === "Huiskamer", mark);
    });

    await step("alice invites bob and bob's sync shows the invite", async () => {
        const mark = bob.seen.mark();
        await alice.client.invite(roomId, bob.userId);
        await bob.seen.waitFor("his invite", (item) =>
            item.kind === "my-membership" && item.roomId === roomId && item.data === KnownMembership.Invite, mark);
    });

    await step("bob joins and alice sees him join", async () => {
        const mark = alice.seen.mark();
        await bob.client.joinRoom(roomId);
        await alice.seen.waitFor("bob's join", isMembership(roomId, bob.userId, KnownMembership.Join), mark);
    });

    await step("they exchange messages", async () => {
        let mark = bob.seen.mark();
        ({ event_id: hello } = await alice.client.sendMessage(roomId, { msgtype: "m.text", body: "Hallo Bob" }));
        await bob.seen.waitFor("alice's message", isEvent(roomId, hello), mark);
        mark = alice.seen.mark();
        ({ event_id: hi } = await bob.client.sendMessage(roomId, { msgtype: "m.text", body: "Hoi Alice" }));
        const seen = await alice.seen.waitFor("bob's message", isEvent(roomId, hi), mark);
        check(seen.getContent().body === "Hoi Alice" && seen.getSender() === bob.userId, "bob's message arrived altered");
    });

    await step("alice edits her message (m.replace) and bob sees the edit", async () => {
        const mark = bob.seen.mark();
        ({ event_id: edit } = await alice.client.sendMessage(roomId, {
            msgtype: "m.text",
            body: "* Hallo Bob!",
            "m.new_content": { msgtype: "m.text", body: "Hallo Bob!" },
            "m.relates_to": { rel_type: RelationType.Replace, event_id: hello },
        }));
        const seen = await bob.seen.waitFor("the edit", isEvent(roomId, edit), mark);
        check(seen.isRelation(RelationType.Replace) && seen.getRelation()?.event_id === hello, "the edit lost its m.replace relation");
        check(seen.getContent()["m.new_content"]?.body === "Hallo Bob!", "the edit lost its new content");
    });

    await step("bob reacts (m.annotation) and alice sees the reaction", async () => {
        const mark = alice.seen.mark();
        ({ event_id: reaction } = await bob.client.sendEvent(roomId, EventType.Reaction, {
            "m.relates_to": { rel_type: RelationType.Annotation, event_id: hello, key: "👍" },
        }));
        const seen = await alice.seen.waitFor("the reaction", isEvent(roomId, reaction), mark);
        const relation = seen.getRelation();
        check(relation?.rel_type === RelationType.Annotation && relation.event_id === hello && relation.key === "👍",
            `the reaction arrived as ${JSON.stringify(relation)}`);
    });

    await step("bob replies in a thread and alice sees the thread reply", async () => {
        const mark = alice.seen.mark();
        const bobMark = bob.seen.mark();
        // Sent through the SDK's HTTP layer but past its send queue: when a thread reply's /sync echo
        // arrives before its /send response, matrix-js-sdk 43 throws from the queue (it looks for the
        // echo in a thread timeline that is not set up yet) and wedges bob's later sends for ~30s,
        // against Synapse too. That race is the SDK's, and would make this step flaky on a fast server.
        const txnId = `thread-${randomBytes(6).toString("hex")}`;
        const path = `/rooms/${encodeURIComponent(roomId)}/send/${EventType.RoomMessage}/${txnId}`;
        ({ event_id: inThread } = await bob.client.http.authedRequest(Method.Put, path, undefined, {
            msgtype: "m.text",
            body: "In een draadje",
            "m.relates_to": {
                rel_type: RelationType.Thread, event_id: hello, is_falling_back: true, "m.in_reply_to": { event_id: hello },
            },
        }));
        const seen = await alice.seen.waitFor("the thread reply", isEvent(roomId, inThread), mark);
        await bob.seen.waitFor("his own thread reply", isEvent(roomId, inThread), bobMark);
        check(seen.isRelation(RelationType.Thread) && seen.threadRootId === hello, "the reply is not in hello's thread");
        // With thread support on (as in Element) the SDK files the reply under a Thread of the root,
        // once it has set the new thread up (which fetches the root and the thread's relations).
        for (const user of [alice, bob]) {
            const room = user.client.getRoom(roomId);
            await eventually(() => room.getThread(hello)?.findEventById(inThread), () =>
                `${user.seen.name}'s room to hold the reply ${inThread} in a thread (${describeThread(room, hello)})`);
        }
    });

    await step("alice redacts a message and bob sees the redaction", async () => {
        const mark = bob.seen.mark();
        ({ event_id: oops } = await alice.client.sendMessage(roomId, { msgtype: "m.text", body: "oeps, verkeerde kamer" }));
        await bob.seen.waitFor("the message to be redacted", isEvent(roomId, oops), mark);
        ({ event_id: redaction } = await alice.client.redactEvent(roomId, oops, undefined, { reason: "typo" }));
        const seen = await bob.seen.waitFor("the redaction", (item) =>
            item.kind === "redaction" && item.roomId === roomId && item.data.getId() === redaction, mark);
        check(seen.getAssociatedId() === oops, `the redaction redacts ${seen.getAssociatedId()}, not ${oops}`);
        check(bob.client.getRoom(roomId).findEventById(oops)?.isRedacted(), "bob's copy of the message is not redacted");
        const fetched = await bob.client.fetchRoomEvent(roomId, oops);
        check(JSON.stringify(fetched.content) === "{}", `the served redacted event has content ${JSON.stringify(fetched.content)}`);
        check(fetched.unsigned?.redacted_because?.event_id === redaction, "the served event lacks unsigned.redacted_because");
    });

    await step("alice sees bob start and stop typing", async () => {
        let mark = alice.seen.mark();
        await bob.client.sendTyping(roomId, true, 30_000);
        await alice.seen.waitFor("bob typing", (item) =>
            item.kind === "typing" && item.roomId === roomId && item.data.userId === bob.userId && item.data.typing, mark);
        mark = alice.seen.mark();
        await bob.client.sendTyping(roomId, false, 0);
        await alice.seen.waitFor("bob stop typing", (item) =>
            item.kind === "typing" && item.roomId === roomId && item.data.userId === bob.userId && !item.data.typing, mark);
    });

    await step("alice reads bob's newest message and bob sees her receipt", async () => {
        // Servers also move a sender's receipt to each event they send, and receipts only advance, so
        // the message alice marks read must come after her own last event.
        let mark = alice.seen.mark();
        ({ event_id: question } = await bob.client.sendMessage(roomId, { msgtype: "m.text", body: "Lees je dit?" }));
        const message = await alice.seen.waitFor("bob's question", isEvent(roomId, question), mark);
        mark = bob.seen.mark();
        await alice.client.sendReadReceipt(message);
        await bob.seen.waitFor("alice's read receipt", (item) =>
            item.kind === "receipt" && item.roomId === roomId &&
            item.data.getContent()[question]?.["m.read"]?.[alice.userId] !== undefined, mark);
        const bobRoom = bob.client.getRoom(roomId);
        const receipts = bobRoom.getReceiptsForEvent(bobRoom.findEventById(question));
        check(receipts.some((r) => r.userId === alice.userId && r.type === "m.read"),
            `bob's room does not place alice's receipt on the question: ${JSON.stringify(receipts)}`);
    });

    await step("bob pages back through /messages from his sync token", async () => {
        // Raw pages from the sync token, as a client does after a gappy sync: this exercises /messages
        // even when the server already gave bob the whole room in his join sync.
        let token = bob.client.store.getSyncToken();
        check(token, "bob's store has no sync token");
        const events = [];
        let pages = 0;
        for (;;) {
            pages += 1;
            check(pages <= 40, "/messages did not reach the start of the room in 40 pages");
            const page = await bob.client.createMessagesRequest(roomId, token, 3, Direction.Backward);
            events.push(...page.chunk);
            if (page.chunk.length === 0 || !page.end || page.end === token) break;
            token = page.end;
        }
        events.reverse();
        const ids = events.map((event) => event.event_id);
        check(events[0]?.type === EventType.RoomCreate, `history starts with ${events[0]?.type}`);
        check(pages >= 3, `expected several pages of 3, got ${pages}`);
        const ours = [hello, hi, edit, reaction, inThread, oops, redaction, question];
        const order = ids.filter((id) => ours.includes(id));
        check(JSON.stringify(order) === JSON.stringify(ours), `history order ${order} is not the send order`);
        check(new Set(ids).size === ids.length, "an event appeared on two pages");
        check(JSON.stringify(events[ids.indexOf(oops)].content) === "{}", "/messages serves the redacted event with content");
    });

    await step("bob scrolls his timeline back to the start of the room", async () => {
        const room = bob.client.getRoom(roomId);
        const timeline = room.getLiveTimeline();
        for (let page = 0; timeline.getPaginationToken(Direction.Backward) !== null; page++) {
            check(page < 40, "scrollback did not reach the start of the room in 40 pages");
            await bob.client.scrollback(room, 3);
        }
        const ids = timeline.getEvents().map((event) => event.getId());
        check(timeline.getEvents()[0]?.getType() === EventType.RoomCreate, `history starts with ${timeline.getEvents()[0]?.getType()}`);
        check(!ids.includes(inThread), "the thread reply leaked into the main timeline");
        // With thread support the reply lives in its thread's timeline, not the main one.
        const ours = [hello, hi, edit, reaction, oops, redaction, question];
        const order = ids.filter((id) => ours.includes(id));
        check(JSON.stringify(order) === JSON.stringify(ours), `timeline order ${order} is not the send order`);
        check(new Set(ids).size === ids.length, "an event appears twice in the timeline");
    });

    await step("bob leaves; alice sees it and bob's sync moves the room to leave", async () => {
        const aliceMark = alice.seen.mark();
        const bobMark = bob.seen.mark();
        await bob.client.leave(roomId);
        await alice.seen.waitFor("bob's leave", isMembership(roomId, bob.userId, KnownMembership.Leave), aliceMark);
        await bob.seen.waitFor("his own leave", (item) =>
            item.kind === "my-membership" && item.roomId === roomId && item.data === KnownMembership.Leave, bobMark);
    });
}

await runScenario({ label: "js", script: "scenario.mjs", scenario, defaultWaitMs: 15_000 });
