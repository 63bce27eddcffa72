"""Runs the OpenAI fake as its own process (so a test can kill it): prints its base URL, serves until killed.

``python -m tests.serving.fake_backend [--delay S]``
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.fakes.openai_server import FakeOpenAIServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer starts")
    args = parser.parse_args()
    server = FakeOpenAIServer().start()
    server.delay_s = args.delay
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
        sys.exit(0)


if __name__ == "__main__":
    main()
