#!/usr/bin/env python3
"""A scripted model server for testing agent CLIs offline (stdlib only).

It speaks the two APIs the Claude Code and Codex CLIs use:

- Anthropic Messages: ``POST /v1/messages`` (streaming SSE or plain JSON);
- OpenAI Responses: ``POST /v1/responses`` (streaming SSE).

Replies come from a script, a JSON file mapping a *tag* to a list of steps:

    {"c-write": [
       {"tool": "Write", "input": {"file_path": "hello.txt", "content": "hi"}},
       {"text": "Wrote hello.txt.", "usage": {"input_tokens": 1200, "output_tokens": 40}}
     ],
     "c-fail": [{"error": {"status": 500, "message": "scripted failure"}}]}

A conversation is matched to its script by the first ``[tag]`` found in
the text of its user messages (e.g. the prompt "[c-write] write hello.txt").
The step is picked by the number of assistant turns already in the request
(model replies and tool calls), so the server is stateless: retries, resumed
sessions and many agents in parallel all get the same reply for the same
conversation. The one exception is ``"times": N`` on an error, which fails
only the first N requests for that tag and step (then falls through to the
step's reply, or the next step when the error step has nothing else).

A step may hold:

- ``"text"``: a final assistant message;
- ``"tool"`` and ``"input"``: one tool call. For the Responses API an
  ``input`` that is a string makes a freeform ``custom_tool_call`` (Codex's
  ``apply_patch``); an object makes a ``function_call`` with JSON arguments;
  ``"namespace"`` is passed through (Codex MCP tools);
- ``"usage"``: ``input_tokens``, ``output_tokens``, ``cache_read_input_tokens``
  (Anthropic) / ``cached_tokens`` (both), defaulting to small numbers;
- ``"error"``: ``{"status": 500, "message": "...", "type": "api_error",
  "retry_after": 2, "times": 1}``: answer with that HTTP status;
- ``"delay_ms"``: wait before answering (for liveness tests).

A conversation with no matching tag gets the step ``"default"`` if the
script has one, else a short text reply. Past the end of its steps it gets
the last step again.

The script file is read again whenever its modification time changes, so a
test can add conversations that name things it learns after the server
started (task ids, say); replace it atomically (write, then rename).

Every request is logged as one JSON line (``--log FILE``): time, path, tag,
turn, model, whether it streamed, the status answered, the last user
text, the first one holding a ``[tag]`` (the prompt that started the
conversation) and the number of messages (input items) in the request.

Usage: ``model_server.py --script SCRIPT.json [--port 0] [--port-file F]
[--log F]``. It prints ``listening http://127.0.0.1:PORT`` on stdout once
ready, and writes the URL to ``--port-file`` when given.
"""

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TAG = re.compile(r"\[([A-Za-z0-9][A-Za-z0-9_.-]{0,62})\]")


class Server:
    """Script, request log and the error counters behind ``times``."""

    def __init__(self, script_path, log_path):
        self.script_path = script_path
        self.script_mtime = None
        self._script = {}
        self.log_path = log_path
        self.lock = threading.Lock()
        self.error_counts = {}
        self.seq = 0

    def next_id(self):
        with self.lock:
            self.seq += 1
            return self.seq

    def log(self, record):
        if not self.log_path:
            return
        line = json.dumps(record, sort_keys=True)
        with self.lock:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    @property
    def script(self):
        """The script, read again when its file changed."""
        import os
        mtime = os.stat(self.script_path).st_mtime_ns
        with self.lock:
            if mtime != self.script_mtime:
                with open(self.script_path, encoding="utf-8") as f:
                    self._script = json.load(f)
                self.script_mtime = mtime
            return self._script

    def take_error(self, tag, turn, error):
        """True when this request should get the step's error."""
        times = error.get("times")
        if times is None:
            return True
        key = (tag, turn)
        with self.lock:
            n = self.error_counts.get(key, 0)
            if n < times:
                self.error_counts[key] = n + 1
                return True
            return False

    def pick(self, tag, turn):
        steps = self.script.get(tag) if tag else None
        if steps is None:
            steps = self.script.get("default")
        if not steps:
            return {"text": "ok"}
        if isinstance(steps, dict):
            steps = [steps]
        return steps[min(turn, len(steps) - 1)]


def texts(content):
    """Every text in a message content (a string or a list of blocks)."""
    if isinstance(content, str):
        return [content]
    out = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                for key in ("text", "content"):
                    v = block.get(key)
                    if isinstance(v, str):
                        out.append(v)
                    elif isinstance(v, list):
                        out.extend(texts(v))
            elif isinstance(block, str):
                out.append(block)
    return out


def find_tag(script, user_texts):
    for text in user_texts:
        for m in TAG.finditer(text):
            if m.group(1) in script:
                return m.group(1)
    return None


def anthropic_conversation(body):
    """(user texts, assistant turns so far) of a Messages request."""
    users, turns = [], 0
    for msg in body.get("messages", []):
        if msg.get("role") == "assistant":
            turns += 1
        elif msg.get("role") == "user":
            users.extend(texts(msg.get("content")))
    return users, turns


def openai_conversation(body):
    """(user texts, assistant turns so far) of a Responses request."""
    users, turns = [], 0
    items = body.get("input", [])
    if isinstance(items, str):
        return [items], 0
    for item in items:
        kind = item.get("type", "message")
        if kind in ("function_call", "custom_tool_call", "local_shell_call", "tool_search_call"):
            turns += 1
        elif kind == "message" and item.get("role") == "assistant":
            turns += 1
        elif kind == "message" and item.get("role") == "user":
            users.extend(texts(item.get("content")))
    return users, turns


def usage_of(step):
    u = step.get("usage", {})
    return {
        "input": int(u.get("input_tokens", 100)),
        "output": int(u.get("output_tokens", 10)),
        "cached": int(u.get("cache_read_input_tokens", u.get("cached_tokens", 0))),
        "cache_write": int(u.get("cache_creation_input_tokens", 0)),
    }


def sse(event, data):
    return ("event: %s\ndata: %s\n\n" % (event, json.dumps(data))).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "torch-model-server/1"

    def log_message(self, fmt, *args):  # quiet: the JSON log has it all
        pass

    @property
    def s(self):
        return self.server.state

    def read_body(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def send_json(self, status, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def start_sse(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        path = self.path.split("?")[0]
        self.s.log({"time": time.time(), "method": "GET", "path": self.path, "status": 200})
        if path.endswith("/models"):
            self.send_json(200, {"data": [], "object": "list", "models": []})
        else:
            self.send_json(200, {})

    def do_POST(self):
        path = self.path.split("?")[0]
        body = self.read_body()
        if path.endswith("/v1/messages"):
            users, turns = anthropic_conversation(body)
            api = "anthropic"
        elif path.endswith("/responses"):
            users, turns = openai_conversation(body)
            api = "openai"
        else:
            self.s.log({"time": time.time(), "method": "POST", "path": self.path, "status": 404})
            self.send_json(404, {"error": {"message": "no such endpoint: " + self.path}})
            return
        tag = find_tag(self.s.script, users)
        step = self.s.pick(tag, turns)
        status = 200
        error = step.get("error")
        if error and not self.s.take_error(tag, turns, error):
            error = None
            if not ("text" in step or "tool" in step):
                step = self.s.pick(tag, turns + 1)
        if step.get("delay_ms"):
            time.sleep(step["delay_ms"] / 1000.0)
        if error:
            status = int(error.get("status", 500))
        self.s.log({
            "time": time.time(),
            "method": "POST",
            "path": self.path,
            "api": api,
            "tag": tag,
            "turn": turns,
            "model": body.get("model"),
            "stream": bool(body.get("stream")),
            "status": status,
            "last_user": users[-1][:500] if users else None,
            "tagged_user": next((u[:500] for u in users if TAG.search(u)), None),
            "messages": len(body.get("messages") or body.get("input") or []),
        })
        if error:
            self.send_error_reply(api, error, status)
        elif api == "anthropic":
            self.anthropic(body, step)
        else:
            self.openai(body, step)

    def send_error_reply(self, api, error, status):
        message = error.get("message", "scripted error %d" % status)
        headers = []
        if "retry_after" in error:
            headers.append(("retry-after", str(error["retry_after"])))
        if api == "anthropic":
            kind = error.get("type") or {
                429: "rate_limit_error",
                529: "overloaded_error",
                401: "authentication_error",
                400: "invalid_request_error",
            }.get(status, "api_error")
            obj = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            obj = {"error": {"type": error.get("type", "server_error"), "message": message,
                             "code": error.get("code")}}
        self.send_json(status, obj, headers)

    # ---- Anthropic Messages ----

    def anthropic(self, body, step):
        n = self.s.next_id()
        model = body.get("model", "claude")
        u = usage_of(step)
        blocks = []
        if "text" in step:
            blocks.append({"type": "text", "text": step["text"]})
        if "tool" in step:
            blocks.append({"type": "tool_use", "id": "toolu_%06d" % n, "name": step["tool"],
                           "input": step.get("input", {})})
        stop = "tool_use" if "tool" in step else "end_turn"
        usage = {"input_tokens": u["input"], "output_tokens": u["output"],
                 "cache_creation_input_tokens": u["cache_write"],
                 "cache_read_input_tokens": u["cached"]}
        msg = {"id": "msg_%06d" % n, "type": "message", "role": "assistant", "model": model,
               "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            self.send_json(200, msg)
            return
        self.start_sse()
        start = dict(msg, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
        out = [sse("message_start", {"type": "message_start", "message": start})]
        for i, b in enumerate(blocks):
            if b["type"] == "text":
                out.append(sse("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": {"type": "text", "text": ""}}))
                out.append(sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "text_delta", "text": b["text"]}}))
            else:
                out.append(sse("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": dict(b, input={})}))
                out.append(sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "input_json_delta",
                                                                 "partial_json": json.dumps(b["input"])}}))
            out.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
        out.append(sse("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": stop, "stop_sequence": None},
                                         "usage": {"output_tokens": u["output"]}}))
        out.append(sse("message_stop", {"type": "message_stop"}))
        self.wfile.write(b"".join(out))
        self.wfile.flush()

    # ---- OpenAI Responses ----

    def openai(self, body, step):
        n = self.s.next_id()
        model = body.get("model", "gpt")
        u = usage_of(step)
        items = []
        if "text" in step:
            items.append({"type": "message", "id": "msg_%06d" % n, "status": "completed",
                          "role": "assistant",
                          "content": [{"type": "output_text", "text": step["text"], "annotations": []}]})
        if "tool" in step:
            arg = step.get("input", {})
            if isinstance(arg, str):
                items.append({"type": "custom_tool_call", "id": "ctc_%06d" % n,
                              "call_id": "call_%06d" % n, "name": step["tool"], "input": arg,
                              "status": "completed"})
            else:
                call = {"type": "function_call", "id": "fc_%06d" % n, "call_id": "call_%06d" % n,
                        "name": step["tool"], "arguments": json.dumps(arg), "status": "completed"}
                if step.get("namespace"):
                    call["namespace"] = step["namespace"]
                items.append(call)
        usage = {"input_tokens": u["input"],
                 "input_tokens_details": {"cached_tokens": u["cached"]},
                 "output_tokens": u["output"],
                 "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": u["input"] + u["output"]}
        resp = {"id": "resp_%06d" % n, "object": "response", "created_at": int(time.time()),
                "status": "completed", "model": model, "output": items, "usage": usage}
        if not body.get("stream", True):
            self.send_json(200, resp)
            return
        self.start_sse()
        seq = [0]

        def ev(kind, data):
            data = dict(data, type=kind, sequence_number=seq[0])
            seq[0] += 1
            return sse(kind, data)

        out = [ev("response.created", {"response": dict(resp, status="in_progress", output=[],
                                                         usage=None)})]
        for i, item in enumerate(items):
            if item["type"] == "message":
                added = dict(item, status="in_progress", content=[])
                out.append(ev("response.output_item.added", {"output_index": i, "item": added}))
                out.append(ev("response.output_text.delta", {"item_id": item["id"], "output_index": i,
                                                             "content_index": 0,
                                                             "delta": item["content"][0]["text"]}))
            else:
                out.append(ev("response.output_item.added", {"output_index": i, "item": item}))
            out.append(ev("response.output_item.done", {"output_index": i, "item": item}))
        out.append(ev("response.completed", {"response": resp}))
        self.wfile.write(b"".join(out))
        self.wfile.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--script", required=True, help="JSON file: tag -> steps")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", help="write the base URL here once listening")
    p.add_argument("--log", help="append one JSON line per request here")
    a = p.parse_args()
    httpd = ThreadingHTTPServer((a.host, a.port), Handler)
    httpd.daemon_threads = True
    httpd.state = Server(a.script, a.log)
    httpd.state.script  # a broken script fails here, before listening
    url = "http://%s:%d" % (a.host, httpd.server_address[1])
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(url + "\n")
        import os
        os.replace(tmp, a.port_file)
    print("listening " + url, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
