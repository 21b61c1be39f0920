"""A scripted OpenAI-compatible chat-completions endpoint on 127.0.0.1, for the judges' tests.

It records every request and answers each with the reply of a function of the prompt, or with the error status it
is told to give, so that a test sees exactly what a client sent and how it handles a failing server.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable


class ChatCompletionsServer:
    """Serves `/v1/chat/completions` until `close()`: the reply is `reply(prompt)` for the first message's content,
    with a `usage` block when `usage` is given; `status` other than 200 answers an error body instead."""

    def __init__(self, reply: Callable[[str], str], usage: dict[str, int] | None = None):
        self.requests: list[dict] = []
        self.status = 200
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                answer = {
                    "choices": [
                        {"message": {"role": "assistant", "content": reply(body["messages"][0]["content"])}}
                    ]
                }
                if usage is not None:
                    answer["usage"] = usage
                payload = json.dumps(answer if server.status == 200 else {"error": "overloaded"}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
