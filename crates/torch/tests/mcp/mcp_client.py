"""Drives `torch mcp` with the official Python MCP client, from inside a task.

Run as a task's command by the `mcp` end-to-end test:
    python mcp_client.py /path/to/torch
It starts `torch mcp` over stdio with the task's TORCH_* environment, lists
the tools, calls each one and checks every structured result against the
tool's output schema (jsonschema), then prints one JSON line of findings.
Exits non-zero on the first thing that is wrong.
"""

import asyncio
import json
import os
import sys

import jsonschema
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

EXPECTED = {"get_task", "report_progress", "delegate_task", "spawn_helper", "wait_task"}


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


async def main(torch):
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

            d = checked(
                await s.call_tool(
                    "delegate_task",
                    {"tasks": [{"name": "mcp-child", "command": ["sh", "-c", "sleep 6; echo child done"], "skills": ["sh"]}]},
                ),
                out("delegate_task"),
                "delegate_task",
            )
            ids = d["task_ids"]
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
    asyncio.run(main(sys.argv[1]))
