"""`python -m appservices.privacy --config privacy.yaml [--generate-registration FILE]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from appservices.privacy.config import PrivacyConfigError, load_privacy_config, registration_yaml
from appservices.privacy.service import PrivacyService


async def serve(service: PrivacyService) -> None:
    await service.start()
    logging.getLogger(__name__).info("privacy service for %s listening on %s", service.config.server_name,
                                     service.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appservices.privacy",
                                     description="The privacy application service (see docs/privacy-service.md)")
    parser.add_argument("--config", required=True, help="privacy.yaml")
    parser.add_argument("--generate-registration", metavar="FILE",
                        help="write the homeserver's registration file for this service and exit")
    args = parser.parse_args(argv)
    try:
        config = load_privacy_config(args.config)
    except (OSError, PrivacyConfigError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.generate_registration:
        with open(args.generate_registration, "w", encoding="utf-8") as f:
            f.write(registration_yaml(config))
        print(f"wrote {args.generate_registration}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(PrivacyService(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
