"""The async client against the real cluster: the same calls, awaited, many at once."""

import asyncio

import pytest

from shoal_client import AsyncClient, AuthError, BadRequest, NotFound, ServiceError, Timeout


def run(coro):
    return asyncio.run(coro)


def test_async_invoke_errors_channels_and_admin(cluster):
    async def main():
        async with AsyncClient(cluster.admin_url, password=cluster.password,
                               channel_url=cluster.http_url) as shoal:
            r = await shoal.invoke('client.echo', {'n': 1}, cid='async-1')
            assert (r.status, r.cid, r.json()['got']) == (200, 'async-1', {'n': 1})

            # Twenty calls at once over one pooled client.
            many = await asyncio.gather(*(shoal.invoke('client.echo', {'i': i}) for i in range(20)))
            assert [m.json()['got']['i'] for m in many] == list(range(20))
            assert len({m.cid for m in many}) == 20

            with pytest.raises(NotFound):
                await shoal.invoke('no.such-service')
            with pytest.raises(BadRequest) as e:
                await shoal.invoke('client.needs', {'age': 3})
            assert e.value.element == 'cust_code'
            with pytest.raises(ServiceError):
                await shoal.invoke('client.fails')
            with pytest.raises(Timeout):
                await shoal.invoke('client.slow', {'seconds': 2}, timeout=0.3)

            chan = shoal.channel('/secure/echo', auth=('partner', 'partner-pw'))
            assert (await chan.invoke({'c': 1})).json()['got'] == {'c': 1}
            with pytest.raises(AuthError):
                await shoal.channel('/secure/echo').invoke({})

            await shoal.kvdb.set('async/key', 'av')
            assert await shoal.kvdb.get('async/key') == 'av'
            await shoal.kvdb.delete('async/key')
            assert any(s['name'] == 'client.echo' for s in await shoal.services.list())
            assert (await shoal.cluster())['members']['gateway']
    run(main())


def test_async_wrong_password(cluster):
    async def main():
        async with AsyncClient(cluster.admin_url, password='nope') as shoal:
            with pytest.raises(AuthError):
                await shoal.services.list()
    run(main())
