"""The official MCP Python SDK (PyPI `mcp`, pinned in scripts/test) as a real client of a
Shoal MCP channel, over Streamable HTTP. Run by tests/tests/mcp.rs:

    python3 sdk_client.py URL USER PASSWORD

It initializes, lists the tools and checks their schemas against the SimpleIO of
tests/fixtures/mcp_tools.py, calls them (a structured answer, bad input, a service's own
refusal, a service raising, an unknown tool), then prints READY and waits for
`notifications/tools/list_changed` (the test deploys a module then) and lists again.
Every check is an assert: a failure exits non-zero with the reason.
"""

import asyncio
import base64
import json
import sys

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def plain(result):
    """A CallToolResult as a dict, the way it came over the wire."""
    return result.model_dump(by_alias=True, mode='json', exclude_none=True)


async def main(url, user, password):
    changed = anyio.Event()

    async def on_message(message):
        m = getattr(message, 'root', message)
        if getattr(m, 'method', '') == 'notifications/tools/list_changed':
            changed.set()

    auth = 'Basic ' + base64.b64encode('{}:{}'.format(user, password).encode()).decode()
    async with create_mcp_http_client(headers={'Authorization': auth}) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                init = await session.initialize()
                assert init.protocol_version in ('2025-06-18', '2025-11-25'), init
                assert init.capabilities.tools and init.capabilities.tools.list_changed, init
                assert init.server_info.name == 'shoal', init

                tools = {t.name: t for t in (await session.list_tools()).tools}
                assert sorted(tools) == ['crm_boom', 'crm_echo', 'crm_get-client'], sorted(tools)
                t = tools['crm_get-client']
                assert t.title == 'Returns a client of the CRM.', t.title
                assert 'Looks the client up by code' in t.description, t.description
                schema = t.input_schema
                props = schema['properties']
                assert schema['type'] == 'object', schema
                assert sorted(schema['required']) == ['age', 'code'], schema
                assert props['code']['type'] == 'string', props
                assert props['code']['description'] == "the client's code, as printed on invoices", props
                assert props['age']['type'] == 'integer', props
                assert props['limit'] == {'type': 'integer', 'default': 10,
                                          'description': 'how many records at most'}, props
                assert props['tags']['type'] == 'array', props
                assert props['vip']['type'] == 'boolean', props
                out = t.output_schema
                assert out is not None and out['type'] == 'object', out
                inner = out['properties']['response'] if 'response' in out['properties'] else out
                assert sorted(inner['required']) == ['age', 'greeting'], inner
                assert inner['properties']['greeting']['description'] == 'what the CRM says', inner
                ann = t.annotations
                assert ann is not None and ann.read_only_hint is True and ann.open_world_hint is False, ann
                assert tools['crm_echo'].output_schema is None, tools['crm_echo']

                # A call: the structured answer, every digit of a big number kept.
                r = await session.call_tool('crm_get-client', {'code': 'A1', 'age': 30, 'tags': ['x', 'y']})
                assert not r.is_error, plain(r)
                sc = r.structured_content
                sc = sc.get('response', sc)
                assert sc['greeting'] == 'Hello A1 (10)', sc
                assert sc['age'] == 30 and sc['tags'] == ['x', 'y'], sc
                assert sc['big'] == 18446744073709551617, sc
                text = json.loads(r.content[0].text)
                assert text.get('response', text)['big'] == 18446744073709551617, r.content

                # Bad input: a tool result with isError, naming the element.
                for args, element in (({'code': 'A1'}, 'age'), ({'code': 'A1', 'age': 'old'}, 'age')):
                    r = await session.call_tool('crm_get-client', args)
                    assert r.is_error, plain(r)
                    assert element in r.content[0].text, plain(r)
                # The service's own refusal: its message.
                r = await session.call_tool('crm_get-client', {'code': 'refuse', 'age': 1})
                assert r.is_error and 'code refuse is not allowed here' in r.content[0].text, plain(r)
                # A service raising: isError, no traceback, nothing of the exception's text.
                r = await session.call_tool('crm_boom', {})
                msg = r.content[0].text
                assert r.is_error and 'crm.boom' in msg, plain(r)
                assert 'Traceback' not in msg and 'secret internals' not in msg, msg
                # Any object, as given.
                r = await session.call_tool('crm_echo', {'n': 10 ** 30, 'd': {'x': [1, 2]}})
                assert not r.is_error and r.structured_content == {'n': 10 ** 30, 'd': {'x': [1, 2]}}, plain(r)
                # An unknown tool is a protocol error.
                try:
                    await session.call_tool('no_such_tool', {})
                    raise AssertionError('an unknown tool was called')
                except MCPError as e:
                    assert 'unknown tool' in str(e), e

                # A deploy adds a tool: the server says so, and the list has it.
                print('READY', flush=True)
                with anyio.fail_after(60):
                    await changed.wait()
                tools = {t.name for t in (await session.list_tools()).tools}
                assert 'crm_added' in tools, tools
                r = await session.call_tool('crm_added', {})
                assert not r.is_error and r.structured_content == {'added': True}, plain(r)
                print('NOTIFIED', flush=True)
    print('SDK OK', flush=True)


if __name__ == '__main__':
    asyncio.run(main(*sys.argv[1:4]))
