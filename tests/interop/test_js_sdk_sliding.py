"""matrix-js-sdk's `SlidingSync` (simplified sliding sync, the protocol of Element X) drives a client.

`js/sliding_scenario.mjs`: Bob's client syncs only through the sliding sync endpoint, with the Rust
crypto stack, while Alice uses classic /sync. Bob's list shows his invite, he joins, Alice's message
reaches him in real time, and an encrypted one decrypts with the room key delivered by the to_device
extension (device keys and one-time key counts through the e2ee extension). Installation and the child
process are handled as in `test_js_sdk.py`.
"""

from __future__ import annotations

import pytest

from tests.interop.test_js_sdk import ensure_js_sdk_installed, node_tools, run

pytestmark = pytest.mark.interop

SCENARIO_SECONDS = 240.0


async def test_a_js_sdk_sliding_sync_client_lists_joins_receives_and_decrypts(homeserver_url):
    node, npm = await node_tools()
    await ensure_js_sdk_installed(npm)

    status, output = await run([node, "sliding_scenario.mjs", homeserver_url], SCENARIO_SECONDS)

    print(output)
    assert status == 0, f"matrix-js-sdk sliding sync scenario failed with status {status}:\n{output[-6000:]}"
    assert "js sliding scenario total" in output
