"""Drives `torch mcp` with the official Python MCP client, from inside a task.

Run as a task's command by the `mcp` end-to-end test:
    python mcp_client.py /path/to/torch HELP_ID
It starts `torch mcp` over stdio with the task's TORCH_* environment, lists
the tools, calls each one and checks every structured result against the
tool's output schema (jsonschema), then prints one JSON line of findings.
HELP_ID is an operator's open help request this task accepts. Exits
non-zero on the first thing that is wrong.
"""

import asyncio
import json
import os
import subprocess
import sys
import time

import jsonschema
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

EXPECTED = {
    "get_task", "report_progress", "delegate_task", "spawn_helper", "wait_task",
    "list_peers", "send_message", "read_inbox", "ack_messages",
    "request_help", "accept_help", "acquire_lock", "release_lock",
}

# The delegated child: holds lock L2, then waits for L1 (held by this task),
# so this task's wait for L2 would close a cycle; once this task releases L1
# the child gets it and runs 6 s more (so wait_task must send progress).
CHILD = (
    "set -e; torch lock acquire mcp-L2 --ttl 120s --json > /dev/null; "
    "torch lock acquire mcp-L1 --ttl 120s --wait 90s --json > /dev/null; sleep 6; echo child done"
)


def fail(msg):
    print(f"mcp client: {msg}", file=sys.stderr)
    sys.exit(1)


def checked(result, schema, what):
    if result.is_error:
        fail(f"{what} failed: {result.content}")
    sc = result.structured_content
    if sc is None:
        fail(f"{what}: no structured content")
    jsonschema.validate(sc, schema)
    return sc


async def refused(s, name, args):
    """The error a call that must fail gets: a JSON-RPC error, or a result
    marked is_error; its message."""
    try:
        r = await s.call_tool(name, args)
    except MCPError as e:
        return str(e)
    if not r.is_error:
        fail(f"{name}({args}) succeeded")
    return " ".join(getattr(c, "text", "") for c in r.content)


def locks(torch):
    out = subprocess.run([torch, "locks", "list", "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


async def main(torch, help_id):
    env = {k: v for k, v in os.environ.items() if k.startswith("TORCH_")}
    params = StdioServerParameters(command=torch, args=["mcp"], env=env)
    found = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            tools = {t.name: t for t in (await s.list_tools()).tools}
            missing = EXPECTED - set(tools)
            if missing:
                fail(f"tools missing: {sorted(missing)}")
            for t in tools.values():
                if not t.input_schema or not t.output_schema:
                    fail(f"{t.name} lacks an input or output schema")
            found["tools"] = sorted(tools)
            out = lambda name: tools[name].output_schema  # noqa: E731

            me = checked(await s.call_tool("get_task", {}), out("get_task"), "get_task")
            if me["id"] != os.environ["TORCH_TASK_ID"] or me["state"] != "running":
                fail(f"get_task: {me}")
            found["self_state"] = me["state"]

            p = checked(
                await s.call_tool("report_progress", {"percent": 42, "message": "via mcp"}),
                out("report_progress"),
                "report_progress",
            )
            found["progress"] = p["percent"]
            refusal = await refused(s, "report_progress", {"percent": 400})
            if "between 0 and 100" not in refusal:
                fail(f"report_progress of 400 %: {refusal!r}")

            # Peers: this task's own agent is one, running this task.
            peers = checked(await s.call_tool("list_peers", {}), out("list_peers"), "list_peers")["peers"]
            mine = [p for p in peers if os.environ["TORCH_TASK_ID"] in p["task_ids"]]
            if not mine or not mine[0]["public_key"]:
                fail(f"list_peers: no peer with a key runs this task: {peers}")
            found["peers"] = len(peers)

            # A signed message to this task itself: straight to its own agent.
            sent = checked(
                await s.call_tool(
                    "send_message",
                    {"task": os.environ["TORCH_TASK_ID"], "text": "hello via mcp", "thread": "mcp"},
                ),
                out("send_message"),
                "send_message",
            )
            found["delivery"] = sent["delivery"]
            inbox = checked(
                await s.call_tool("read_inbox", {"wait_seconds": 10, "thread": "mcp"}),
                out("read_inbox"),
                "read_inbox",
            )["messages"]
            got = [m for m in inbox if m["id"] == sent["id"]]
            if not got or not got[0]["verified"] or got[0]["body"] != "hello via mcp":
                fail(f"read_inbox: the message did not arrive verified: {inbox}")
            found["verified"] = got[0]["verified"]
            found["from"] = got[0]["from"]
            acked = checked(
                await s.call_tool("ack_messages", {"ids": [sent["id"]]}), out("ack_messages"), "ack_messages"
            )
            found["acked"] = acked["acked"]
            after = checked(
                await s.call_tool("read_inbox", {"thread": "mcp"}), out("read_inbox"), "read_inbox(after ack)"
            )["messages"]
            if any(m["id"] == sent["id"] for m in after):
                fail("the acked message is still in the inbox")
            found["no_recipient"] = (await refused(s, "send_message", {"text": "to nobody"}))[:300]

            # Help: this task's own request (open), which it may not accept;
            # an operator's request, which it accepts.
            h = checked(
                await s.call_tool(
                    "request_help", {"skill": "sh", "text": "review my lock code", "timeout_seconds": 120}
                ),
                out("request_help"),
                "request_help",
            )
            if h["state"] != "open" or h["requester"] != f"task:{os.environ['TORCH_TASK_ID']}":
                fail(f"request_help: {h}")
            found["own_accept"] = (await refused(s, "accept_help", {"id": h["id"]}))[:300]
            a = checked(await s.call_tool("accept_help", {"id": help_id}), out("accept_help"), "accept_help")
            found["accepted"] = a["state"]
            found["again"] = (await refused(s, "accept_help", {"id": help_id}))[:300]

            # Locks: hold L1; a child holds L2 and waits for L1; our wait for
            # L2 would close the cycle and is refused naming it.
            g1 = checked(
                await s.call_tool("acquire_lock", {"name": "mcp-L1", "ttl_seconds": 120}),
                out("acquire_lock"),
                "acquire_lock",
            )
            found["fence"] = g1["fence"]
            d = checked(
                await s.call_tool(
                    "delegate_task",
                    {"tasks": [{"name": "mcp-child", "command": ["sh", "-c", CHILD], "skills": ["sh"]}]},
                ),
                out("delegate_task"),
                "delegate_task",
            )
            ids = d["task_ids"]
            deadline = time.monotonic() + 60
            while True:
                l1 = [l for l in locks(torch)["locks"] if l["name"] == "mcp-L1"]
                if l1 and l1[0]["waiters"]:
                    break
                if time.monotonic() > deadline:
                    fail(f"the child never waited for mcp-L1: {locks(torch)}")
                await asyncio.sleep(0.1)
            found["deadlock"] = await refused(s, "acquire_lock", {"name": "mcp-L2", "wait_seconds": 30})
            r = checked(
                await s.call_tool("release_lock", {"name": "mcp-L1", "fence": g1["fence"]}),
                out("release_lock"),
                "release_lock",
            )
            found["released"] = r["released"]
            found["stale_release"] = (
                await refused(s, "release_lock", {"name": "mcp-L1", "fence": g1["fence"]})
            )[:300]
            notes = []

            async def on_progress(progress, total, message):
                notes.append(message)

            w = checked(
                await s.call_tool(
                    "wait_task",
                    {"task_ids": ids, "timeout_seconds": 60},
                    progress_callback=on_progress,
                ),
                out("wait_task"),
                "wait_task",
            )
            if not (w["done"] and w["all_succeeded"]):
                fail(f"wait_task: {w}")
            if not notes:
                fail("wait_task sent no progress notification during a 6 s wait")
            found["child"] = w["tasks"][0]["state"]
            found["progress_notes"] = len(notes)

            child = checked(
                await s.call_tool("get_task", {"task_id": ids[0]}), out("get_task"), "get_task(child)"
            )
            found["child_name"] = child["name"]

            found["spawn_refused"] = (await refused(s, "spawn_helper", {"template": "no-such-template"}))[:300]
    print(json.dumps(found))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
