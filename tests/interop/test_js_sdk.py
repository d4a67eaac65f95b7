"""matrix-js-sdk, the SDK under Element Web, runs the two-user room scenario in `js/scenario.mjs`.

The scenario drives the SDK's own sync loop (`startClient`) and prints one line per step; this test
installs the pinned SDK with `npm ci` when `node_modules` is missing and runs the scenario against the
server under test. The server may be running in-process on this event loop, so the child process is
awaited asynchronously: a blocking wait would stall the very server the scenario talks to.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

JS_DIR = Path(__file__).resolve().parent / "js"
MIN_NODE_MAJOR = 20
NPM_CI_SECONDS = 300.0
SCENARIO_SECONDS = 240.0


async def run(command: list[str], timeout: float) -> tuple[int, str]:
    """Run a command in `JS_DIR`; returns its status and combined output, killing it on timeout."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=JS_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        text = output.decode(errors="replace")
        raise AssertionError(f"{' '.join(command)} did not finish within {timeout:.0f}s:\n{text}") from None
    return process.returncode, output.decode(errors="replace")


async def node_tools() -> tuple[str, str]:
    """Paths of `node` and `npm`, skipping the test when either is missing or node is too old."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("matrix-js-sdk scenario needs node and npm on PATH (Node >= 20)")
    status, version = await run([node, "--version"], 30)
    match = re.match(r"v(\d+)\.", version.strip())
    if status != 0 or match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        pytest.skip(f"matrix-js-sdk scenario needs Node >= {MIN_NODE_MAJOR}, found {version.strip()!r}")
    return node, npm


async def ensure_js_sdk_installed(npm: str) -> None:
    if (JS_DIR / "node_modules" / "matrix-js-sdk" / "package.json").exists():
        return
    status, output = await run([npm, "ci", "--no-audit", "--no-fund"], NPM_CI_SECONDS)
    assert status == 0, f"npm ci in {JS_DIR} failed with status {status}:\n{output[-3000:]}"


async def test_two_js_sdk_users_chat_edit_react_thread_redact_and_leave(rooms_url):
    node, npm = await node_tools()
    await ensure_js_sdk_installed(npm)

    status, output = await run([node, "scenario.mjs", rooms_url], SCENARIO_SECONDS)

    print(output)
    assert status == 0, f"matrix-js-sdk scenario failed with status {status}:\n{output[-5000:]}"
    assert "js scenario total" in output
