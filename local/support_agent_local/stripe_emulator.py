"""localstripe (a stateful Stripe emulator, dev dependency) on 127.0.0.1, as a subprocess.

The real `stripe` SDK talks to it over HTTP, so tests and the local runtime exercise the same requests a
deployment sends. Two things differ from running the `localstripe` command: it listens on 127.0.0.1 only
(the command binds every interface), and it keeps its state in memory (the command pickles its whole
store to a fixed /tmp file after every write, which parallel test workers would share).

    with LocalStripe() as emulator:
        client = stripe.StripeClient(emulator.api_key, base_addresses={"api": emulator.url})
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from types import TracebackType

API_KEY = "sk_test_localstripe"  # localstripe accepts any key starting with sk_


class LocalStripe:
    """Start localstripe on a free port of 127.0.0.1; stop it on exit."""

    def __init__(self, startup_timeout: float = 20.0) -> None:
        self.startup_timeout = startup_timeout
        self.api_key = API_KEY
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalStripe:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "support_agent_local.stripe_emulator", "--exit-with-stdin"],
            stdin=subprocess.PIPE,  # closed when this process ends, however it ends: the child then exits
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # the child prints its port once it has bound the socket
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("localstripe did not start (is the dev extra installed?)")
        self.port = int(line)
        self._wait_until_answering()
        return self

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                if self._call("GET", "/v1/balance") == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline or (self._proc and self._proc.poll() is not None):
                self.stop()
                raise RuntimeError(f"localstripe did not answer on {self.url}")
            time.sleep(0.05)

    def reset(self) -> None:
        """Forget every object (localstripe's DELETE /_config/data)."""
        self._call("DELETE", "/_config/data")

    def _call(self, method: str, path: str) -> int:
        """One request to the emulator (always http://127.0.0.1:port); returns the status."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        request = urllib.request.Request(f"{self.url}{path}", method=method, headers=headers)  # noqa: S310
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            return int(resp.status)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> LocalStripe:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(port: int = 0, exit_with_stdin: bool = False) -> None:
    """Run localstripe's app on 127.0.0.1 (port 0: a free one), printing the port on the first line.

    With exit_with_stdin, stop when standard input closes (the parent that started us is gone)."""
    from aiohttp import web
    from localstripe import resources, server

    # In-memory only: no shared /tmp/localstripe.pickle, and no re-pickling of the store on every write.
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    print(sock.getsockname()[1], flush=True)
    if exit_with_stdin:
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    web.run_app(server.app, sock=sock, access_log=None, print=None, handle_signals=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="localstripe on 127.0.0.1, state in memory")
    parser.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    parser.add_argument("--exit-with-stdin", action="store_true", help="stop when standard input closes")
    args = parser.parse_args(argv)
    serve(args.port, args.exit_with_stdin)


if __name__ == "__main__":
    main()
