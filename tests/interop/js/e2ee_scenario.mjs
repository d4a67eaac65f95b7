// End-to-end encryption between matrix-js-sdk clients with the Rust crypto stack (the one under Element).
//
//   node e2ee_scenario.mjs BASE_URL
//
// Alice and Bob each run `initRustCrypto` (in-memory store) and the SDK's own sync loop. Alice creates an
// m.megolm.v1.aes-sha2 room and invites Bob; Alice's message decrypts at Bob and Bob's answer at Alice,
// the keys travelling through /keys/upload, /keys/query, /keys/claim, /sendToDevice and /sync. Alice then
// sets up recovery the way Element does: cross-signing (/keys/device_signing/upload, /keys/signatures/upload),
// secret storage (account data) and a server-side key backup (/room_keys), to which her client uploads its
// room keys. A new login of Alice, given the recovery key as a user would type it, reads the backup key from
// secret storage, restores the room keys from the backup and decrypts the history, then cross-signs itself,
// which her first device learns through device_lists and /keys/query. One line per step on stdout; on any
// failure a line starting with "FAIL" and exit status 1. Set INTEROP_JS_VERBOSE=1 for the SDK's own logging.

import {
    ClientEvent,
    EventType,
    KnownMembership,
    MatrixEventEvent,
    RoomEvent,
    SyncState,
    createClient,
} from "matrix-js-sdk";

import { check, eventually, login, Observed, PASSWORD, recordingFetch, register, runScenario } from "./harness.mjs";

const MEGOLM = "m.megolm.v1.aes-sha2";

/** A logged-in client with Rust crypto whose startClient() sync loop feeds an Observed. */
async function startEncryptingClient(baseUrl, name, session) {
    // The secret storage key the user would type in; Element keeps it in a similar cache while it is needed.
    const keychain = { recoveryKey: null };
    const client = createClient({
        baseUrl,
        cryptoCallbacks: {
            getSecretStorageKey: async ({ keys }) => {
                const keyId = Object.keys(keys)[0];
                return keychain.recoveryKey && keyId ? [keyId, keychain.recoveryKey] : null;
            },
        },
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
    // Encrypted timeline events are decrypted after they reach the timeline; this is when their content shows.
    client.on(MatrixEventEvent.Decrypted, (event) => seen.record("decrypted", event.getRoomId(), event));
    client.on(RoomEvent.MyMembership, (room, membership) => seen.record("my-membership", room.roomId, membership));
    client.on(ClientEvent.Sync, (state, _previous, data) => {
        if (state === SyncState.Error) seen.record("sync-error", null, String(data?.error?.message ?? data?.error));
        else seen.record("sync", null, state);
    });
    client.startClient({ initialSyncLimit: 20 });
    await seen.waitFor("its initial sync", (item) => item.kind === "sync" && item.data === SyncState.Prepared);
    return { client, seen, keychain, userId: session.user_id, deviceId: session.device_id };
}

/** Matches the decryption of `eventId` into an m.room.message with `body`; fails fast on a decryption error. */
const decryptedText = (roomId, eventId, body) => (item) => {
    if (item.kind !== "decrypted" || item.roomId !== roomId || item.data.getId() !== eventId) return false;
    if (item.data.isDecryptionFailure()) return false;
    const content = item.data.getContent();
    return item.data.getType() === EventType.RoomMessage && content.body === body;
};

const isMembership = (roomId, userId, membership) => (item) =>
    item.kind === "timeline" && item.roomId === roomId && item.data.getType() === EventType.RoomMember &&
    item.data.getStateKey() === userId && item.data.getContent().membership === membership;

async function scenario(baseUrl, step, clients) {
    let alice, bob, aliceAgain, aliceUsername, roomId, hello, hi, backupVersion, recoveryKey;

    await step("register alice and bob, start rust crypto and their sync loops", async () => {
        const [a, b] = await Promise.all([register(baseUrl, "alice", "e2ee"), register(baseUrl, "bob", "e2ee")]);
        aliceUsername = a.username;
        [alice, bob] = await Promise.all([
            startEncryptingClient(baseUrl, "alice", a), startEncryptingClient(baseUrl, "bob", b),
        ]);
        clients.push(alice.client, bob.client);
        // Each device published its identity keys: the other side can fetch them with /keys/query.
        for (const [me, other] of [[alice, bob], [bob, alice]]) {
            await eventually(async () => {
                const devices = await me.client.getCrypto().getUserDeviceInfo([other.userId], true);
                return devices.get(other.userId)?.has(other.deviceId);
            }, async () => `${me.seen.name} to see ${other.seen.name}'s device ${other.deviceId} in /keys/query`);
        }
    });

    await step("alice creates an encrypted room and bob joins", async () => {
        const aliceMark = alice.seen.mark();
        ({ room_id: roomId } = await alice.client.createRoom({
            name: "Versleuteld",
            preset: "private_chat",
            invite: [bob.userId],
            initial_state: [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: MEGOLM } }],
        }));
        await alice.seen.waitFor("the room's encryption event", (item) =>
            item.kind === "timeline" && item.roomId === roomId && item.data.getType() === EventType.RoomEncryption,
        aliceMark);
        await bob.seen.waitFor("his invite", (item) =>
            item.kind === "my-membership" && item.roomId === roomId && item.data === KnownMembership.Invite);
        await bob.client.joinRoom(roomId);
        await alice.seen.waitFor("bob's join", isMembership(roomId, bob.userId, KnownMembership.Join), aliceMark);
        check(await alice.client.getCrypto().isEncryptionEnabledInRoom(roomId), "alice's crypto does not see the room as encrypted");
    });

    await step("alice sends an encrypted message and bob decrypts it", async () => {
        const mark = bob.seen.mark();
        ({ event_id: hello } = await alice.client.sendMessage(roomId, { msgtype: "m.text", body: "Geheim, Bob" }));
        const event = await bob.seen.waitFor("alice's message, decrypted", decryptedText(roomId, hello, "Geheim, Bob"), mark);
        check(event.getSender() === alice.userId, `the message decrypted as sent by ${event.getSender()}`);
        check(event.getWireType() === EventType.RoomMessageEncrypted, `the message arrived as ${event.getWireType()}`);
        // The server only ever held ciphertext.
        const raw = await bob.client.fetchRoomEvent(roomId, hello);
        check(raw.type === EventType.RoomMessageEncrypted && raw.content.algorithm === MEGOLM,
            `the server holds the message as ${raw.type} ${raw.content.algorithm}`);
        check(!JSON.stringify(raw).includes("Geheim"), "the server holds the plaintext");
    });

    await step("bob answers encrypted and alice decrypts it", async () => {
        const mark = alice.seen.mark();
        ({ event_id: hi } = await bob.client.sendMessage(roomId, { msgtype: "m.text", body: "Begrepen, Alice" }));
        const event = await alice.seen.waitFor("bob's answer, decrypted", decryptedText(roomId, hi, "Begrepen, Alice"), mark);
        check(event.getSender() === bob.userId, `the answer decrypted as sent by ${event.getSender()}`);
        const info = await alice.client.getCrypto().getEncryptionInfoForEvent(event);
        check(info !== null, "alice has no encryption info for bob's answer");
    });

    await step("alice bootstraps cross-signing like Element (with her password if the server asks)", async () => {
        const crypto = alice.client.getCrypto();
        await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(alice.userId) });
        const status = await crypto.getCrossSigningStatus();
        check(status.publicKeysOnDevice && Object.values(status.privateKeysCachedLocally).every(Boolean),
            `alice's cross-signing status after bootstrap: ${JSON.stringify(status)}`);
        // The device signature goes up with /keys/signatures/upload and comes back through /keys/query.
        await eventually(async () => (await crypto.getDeviceVerificationStatus(alice.userId, alice.deviceId))
            ?.crossSigningVerified, () => "alice's own device to be signed by her self-signing key");
        // Bob learns of her new identity through /keys/query.
        await eventually(() => bob.client.getCrypto().userHasCrossSigningKeys(alice.userId, true),
            () => "bob to see alice's cross-signing keys");
    });

    await step("alice sets up secret storage and a key backup; her client uploads the room keys", async () => {
        const crypto = alice.client.getCrypto();
        const generated = await crypto.createRecoveryKeyFromPassphrase();
        check(typeof generated.encodedPrivateKey === "string", "no recovery key was generated");
        alice.keychain.recoveryKey = generated.privateKey;
        recoveryKey = generated.privateKey;
        await crypto.bootstrapSecretStorage({ createSecretStorageKey: async () => generated, setupNewKeyBackup: true });
        check(await crypto.isSecretStorageReady(), "alice's secret storage is not ready after bootstrap");
        backupVersion = await crypto.getActiveSessionBackupVersion();
        check(backupVersion, "alice's client did not enable the backup it created");
        const info = await crypto.getKeyBackupInfo();
        check(info?.version === backupVersion && info.algorithm === "m.megolm_backup.v1.curve25519-aes-sha2",
            `GET /room_keys/version answered ${JSON.stringify(info)}`);
        const trust = await crypto.isKeyBackupTrusted(info);
        check(trust.trusted && trust.matchesDecryptionKey, `alice does not trust her own backup: ${JSON.stringify(trust)}`);
        // Her client backs up both megolm sessions (hers and the one bob shared) after a random delay.
        let stored;
        await eventually(async () => {
            stored = await alice.client.http.authedRequest("GET", `/room_keys/keys/${encodeURIComponent(roomId)}`,
                { version: backupVersion });
            return Object.keys(stored.sessions ?? {}).length >= 2;
        }, async () => `two sessions of the room in the backup, have ${JSON.stringify(stored)}`);
        for (const [sessionId, data] of Object.entries(stored.sessions)) {
            check(typeof data.session_data?.ciphertext === "string" && typeof data.first_message_index === "number",
                `backed-up session ${sessionId} is ${JSON.stringify(data)}`);
        }
        // The SDK caches the version it created (with a made-up count), so ask the server itself.
        const after = await alice.client.http.authedRequest("GET", `/room_keys/version/${backupVersion}`);
        check(after.count >= 2 && typeof after.etag === "string" && after.etag !== "",
            `GET /room_keys/version/${backupVersion} answered count ${after.count}, etag ${JSON.stringify(after.etag)}`);
    });

    await step("a new login of alice cannot decrypt the history on its own", async () => {
        const session = await login(baseUrl, "alice2", aliceUsername);
        check(session.user_id === alice.userId && session.device_id !== alice.deviceId, "the login is not a new device of alice");
        aliceAgain = await startEncryptingClient(baseUrl, "alice2", session);
        clients.push(aliceAgain.client);
        const room = aliceAgain.client.getRoom(roomId);
        check(room, "the new device's initial sync lacks the room");
        // Its initial sync held the messages; without keys they stay undecryptable.
        await eventually(() => {
            const event = room.findEventById(hello);
            return event && !event.isBeingDecrypted() && event.isDecryptionFailure();
        }, () => `alice2 to hold ${hello} as an undecryptable event (${describe(room.findEventById(hello))})`);
    });

    await step("the new login enters the recovery key, restores the backup and decrypts the history", async () => {
        const crypto = aliceAgain.client.getCrypto();
        const mark = aliceAgain.seen.mark();
        // What the user does by typing the recovery key: the secret storage callback can now answer.
        aliceAgain.keychain.recoveryKey = recoveryKey;
        await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
        const result = await crypto.restoreKeyBackup();
        check(result.imported >= 2 && result.total >= 2, `restoring imported ${result.imported} of ${result.total} keys`);
        const room = aliceAgain.client.getRoom(roomId);
        for (const [eventId, body] of [[hello, "Geheim, Bob"], [hi, "Begrepen, Alice"]]) {
            const done = decryptedText(roomId, eventId, body);
            if (!done({ kind: "decrypted", roomId, data: room.findEventById(eventId) })) {
                await aliceAgain.seen.waitFor(`${eventId} decrypted from the backup`, done, mark);
            }
        }
    });

    await step("the new login cross-signs itself from secret storage and alice's first device sees it", async () => {
        // The private keys only import once the device knows alice's public identity from /keys/query.
        await eventually(() => aliceAgain.client.getCrypto().userHasCrossSigningKeys(alice.userId, true),
            () => "alice2 to see alice's cross-signing keys");
        await aliceAgain.client.getCrypto().bootstrapCrossSigning({});
        const status = await aliceAgain.client.getCrypto().getCrossSigningStatus();
        check(Object.values(status.privateKeysCachedLocally).every(Boolean),
            `alice2 did not import the cross-signing keys: ${JSON.stringify(status)}`);
        // The signature goes up with /keys/signatures/upload; alice's first device hears of it through
        // sync's device_lists.changed and re-queries.
        await eventually(async () => {
            const verification = await alice.client.getCrypto().getDeviceVerificationStatus(alice.userId, aliceAgain.deviceId);
            return verification?.crossSigningVerified;
        }, async () => `alice's first device to see ${aliceAgain.deviceId} cross-signed`);
    });
}

/** A UIA callback that completes m.login.password, as Element asks the user for her password. */
function passwordAuth(userId) {
    return async (makeRequest) => {
        let session;
        try {
            await makeRequest(null);
            return;
        } catch (error) {
            // Servers may let the first cross-signing upload through without UIA (Synapse does).
            check(error.httpStatus === 401 && error.data?.flows, `upload without auth: ${error.httpStatus} ${error.message}`);
            check(error.data.flows.some((flow) => flow.stages?.includes("m.login.password")),
                `no m.login.password flow in ${JSON.stringify(error.data.flows)}`);
            session = error.data.session;
        }
        await makeRequest({
            type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password: PASSWORD, session,
        });
    };
}

await runScenario({ label: "js e2ee", script: "e2ee_scenario.mjs", scenario, defaultWaitMs: 20_000 });
