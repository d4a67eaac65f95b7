"""python -m synctest --base-url URL [--federation-base-url URL] [--filter SUBSTRING]
[--registration-shared-secret S]"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp

from synctest.context import Context
from synctest.registry import all_cases, run_cases, select


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="synctest", description="Matrix homeserver conformance cases.")
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8008")
    parser.add_argument(
        "--federation-base-url",
        help="where the server-server API (/_matrix/federation, /_matrix/key) is served; default: --base-url",
    )
    parser.add_argument("--filter", help="run only cases whose name contains this substring")
    parser.add_argument("--registration-shared-secret", help="enables cases that create admin users")
    parser.add_argument("--list", action="store_true", help="print case names and exit")
    return parser.parse_args(argv)


def _emit(line: str) -> None:
    print(line, flush=True)


async def main(args: argparse.Namespace) -> int:
    cases = select(all_cases(), args.filter)
    if not cases:
        # A mistyped filter must not look like a clean run.
        print(f"no case matches {args.filter!r}", file=sys.stderr)
        return 2
    if args.list:
        for item in cases:
            print(item.name)
        return 0
    timeout = aiohttp.ClientTimeout(total=30)
    # No cookie jar: a homeserver's answers must not depend on state a browser would carry.
    async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
        ctx = Context(args.base_url, session, args.registration_shared_secret, args.federation_base_url)
        failed = await run_cases(cases, ctx, _emit)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
