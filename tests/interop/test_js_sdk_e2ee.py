"""matrix-js-sdk with its Rust crypto (`@matrix-org/matrix-sdk-crypto-wasm`, as in Element) runs the
end-to-end encryption scenario in `js/e2ee_scenario.mjs`.

Two users exchange Megolm-encrypted messages in both directions through the SDK's own sync loop; then
Alice sets up recovery as Element does (cross-signing, secret storage, a server-side key backup), and a new
login of hers restores the room keys from the backup with the recovery key, decrypts the history and
cross-signs itself. This covers /keys/upload, /keys/query, /keys/claim, /sendToDevice, the E2EE parts of
/sync, /keys/device_signing/upload, /keys/signatures/upload, secret-storage account data and /room_keys as
a stock client uses them. Installation and the child process are handled as in `test_js_sdk.py`: `npm ci`
when `node_modules` is missing, skipped only when node or npm is missing.
"""

from __future__ import annotations

import pytest

from tests.interop.test_js_sdk import ensure_js_sdk_installed, node_tools, run

pytestmark = pytest.mark.interop

SCENARIO_SECONDS = 240.0


async def test_js_sdk_rust_crypto_clients_exchange_encrypted_messages_and_a_new_login_recovers_them(
    homeserver_url,
):
    node, npm = await node_tools()
    await ensure_js_sdk_installed(npm)

    status, output = await run([node, "e2ee_scenario.mjs", homeserver_url], SCENARIO_SECONDS)

    print(output)
    assert status == 0, f"matrix-js-sdk E2EE scenario failed with status {status}:\n{output[-6000:]}"
    assert "js e2ee scenario total" in output
