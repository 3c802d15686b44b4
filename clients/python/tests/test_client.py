"""The sync client against a real cluster: invoke, channels, every error type, timeouts,
the admin verbs, and a retry through a restarted gateway."""

import os
import re
import signal
import time

import httpx
import pytest
from conftest import until

from shoal_client import (AuthError, BadRequest, Client, NotFound, Retry, ServiceError, Timeout,
                          TransportError)


def test_invoke_returns_status_json_headers_cid_and_elapsed(client):
    r = client.invoke('client.echo', {'a': 1})
    assert r.status == 200 and r.ok
    assert r.json() == {'got': {'a': 1}, 'cid': r.cid}
    assert re.fullmatch('[0-9a-f]{24}', r.cid)
    assert r.headers['content-type'] == 'application/json'
    assert 0 < r.elapsed < 10
    assert '"got"' in r.text


def test_invoke_with_a_chosen_cid_and_no_payload(client):
    r = client.invoke('client.echo', cid='order-42.a')
    assert r.cid == 'order-42.a'
    assert r.json() == {'got': None, 'cid': 'order-42.a'}
    with pytest.raises(ValueError):
        client.invoke('client.echo', cid='not allowed!')


def test_error_types(client, cluster):
    with pytest.raises(NotFound) as e:
        client.invoke('no.such-service')
    assert e.value.status == 404 and e.value.code == 'not_found'
    assert 'no such service' in e.value.message and e.value.cid

    with pytest.raises(BadRequest) as e:
        client.invoke('client.needs', {'cust_code': 'c1'})
    assert e.value.element == 'age' and e.value.code == 'bad_request' and e.value.status == 400
    with pytest.raises(BadRequest) as e:
        client.invoke('client.needs', {'cust_code': 'c1', 'age': 'old'})
    assert e.value.element == 'age' and 'Int' in e.value.message

    with pytest.raises(ServiceError) as e:
        client.invoke('client.fails')
    assert e.value.status == 500 and e.value.code == 'service_error' and e.value.cid
    assert 'Traceback' not in e.value.message

    with Client(cluster.admin_url, password='wrong') as bad:
        with pytest.raises(AuthError) as e:
            bad.invoke('client.echo')
    assert e.value.status == 401

    with Client('http://127.0.0.1:1', password='x', read_retry=Retry(attempts=1)) as nowhere:
        with pytest.raises(TransportError):
            nowhere.cluster()
    # Every error is a ShoalError, and says its status and cid.
    assert 'cid' in str(e.value) or e.value.cid is None


def test_timeouts_against_a_slow_service(client):
    started = time.monotonic()
    with pytest.raises(Timeout):
        client.invoke('client.slow', {'seconds': 3}, timeout=0.5)
    assert time.monotonic() - started < 2.5
    # The cluster's own deadline (the header the client sends) answers 504 → Timeout too.
    with Client(client._admin.base.rsplit('/api/v1/', 1)[0], timeout=10) as patient:
        with pytest.raises(Timeout) as e:
            patient.invoke('client.slow', {'seconds': 3}, timeout=1.0)
    assert e.value.status in (None, 504)


def test_channels_with_and_without_security(client):
    r = client.channel('/echo').invoke({'via': 'channel'})
    assert r.json()['got'] == {'via': 'channel'}
    assert client.channel('/hello').get({'name': 'Chan'}).json()['greeting'] == 'Hello, Chan!'
    with pytest.raises(AuthError):
        client.channel('/secure/echo').invoke({})
    ok = client.channel('/secure/echo', auth=('partner', 'partner-pw')).invoke({'s': 1})
    assert ok.json()['got'] == {'s': 1}
    with pytest.raises(NotFound):
        client.channel('/no/such/channel').invoke({})
    with pytest.raises(BadRequest):
        client.channel('/echo').invoke(content=b'{not json', headers={'content-type': 'application/json'})


def test_admin_verbs(client, tmp_path):
    names = {s['name'] for s in client.services.list()}
    assert {'client.echo', 'hello.say-hello'} <= names
    assert client.services.get('client.echo')['instances']
    with pytest.raises(NotFound):
        client.services.get('no.such')

    # A channel made through the client serves at once.
    client.channels.put('made-by-client', {'type': 'http', 'service': 'client.echo', 'url_path': '/made'})
    assert client.channels.get('made-by-client')['url_path'] == '/made'
    assert any(c['name'] == 'made-by-client' for c in client.channels.list())
    got = until(lambda: client.channel('/made').invoke({'m': 1}).json()['got'], what='the new channel')
    assert got == {'m': 1}
    client.channels.delete('made-by-client')
    with pytest.raises(NotFound):
        client.channels.get('made-by-client')
    with pytest.raises(BadRequest):
        client.channels.put('bad', {'type': 'http', 'service': 'x', 'url_path': 'no-slash'})

    # Security definitions never come back with their secret.
    client.security.put('client-key', {'type': 'apikey', 'header': 'X-Key', 'key': 'k-secret'})
    assert 'k-secret' not in str(client.security.get('client-key'))
    client.security.delete('client-key')

    # Jobs: create, run now, see the run's result (manual runs are not schedule runs).
    client.jobs.put('client-job', {'type': 'interval', 'hours': 1, 'service': 'client.echo', 'is_active': False})
    cid = client.jobs.run('client-job')['cid']
    last = until(lambda: (client.jobs.get('client-job').get('last_result') or {}).get('cid') == cid
                 and client.jobs.get('client-job')['last_result'], what='the manual run')
    assert last['result'] == 'ok' and last['manual'] is True
    client.jobs.delete('client-job')

    # KVDB: set with expiry, read, delete.
    client.kvdb.set('client/key', 'v1', expiry=60)
    assert client.kvdb.get('client/key') == 'v1'
    ttl = client.kvdb.ttl('client/key')
    assert ttl is not None and 0 < ttl <= 60
    client.kvdb.delete('client/key')
    with pytest.raises(NotFound):
        client.kvdb.get('client/key')
    # Listing by prefix.
    for k in ('client/list/b', 'client/list/a', 'client/other'):
        client.kvdb.set(k, 'x')
    assert client.kvdb.list('client/list/') == ['client/list/a', 'client/list/b']
    assert client.kvdb.list('client/', limit=1) == ['client/list/a']
    for k in ('client/list/b', 'client/list/a', 'client/other'):
        client.kvdb.delete(k)

    # Deploy a module, invoke it, roll it back.
    module = tmp_path / 'client_deployed.py'
    module.write_text("from shoal import Service\n\nclass V(Service):\n    name = 'client.version'\n"
                      "    def handle(self):\n        self.response.payload = {'v': 1}\n")
    out = client.deploy(module)
    assert out['deployed'][0]['services'] == ['client.version']
    # Routing learns of new services from the executors' member records: a moment later.
    until(lambda: client.invoke('client.version').json() == {'v': 1}, what='v1 serving')
    client.deploy(('client_deployed.py', module.read_text().replace("'v': 1", "'v': 2")))
    until(lambda: client.invoke('client.version').json() == {'v': 2}, what='v2 serving')
    client.rollback('client_deployed')
    until(lambda: client.invoke('client.version').json() == {'v': 1}, what='rolled back to v1')
    assert any(m['module'] == 'client_deployed' for m in client.modules()['modules'])
    with pytest.raises(BadRequest) as e:
        client.deploy(('broken.py', 'def (:\n'))
    assert 'broken.py' in e.value.message

    # apply/export, cluster, openapi, requests.
    applied = client.apply({'channels': [{'name': 'applied', 'type': 'http', 'service': 'client.echo',
                                          'url_path': '/applied'}]})
    assert 'channels/applied' in applied.get('created', []) + applied.get('unchanged', [])
    assert any(c['name'] == 'applied' for c in client.export()['channels'])
    assert client.cluster()['members']['executor']
    assert client.openapi()['openapi'].startswith('3.')
    recent = client.requests(service='client.*', limit=5)
    assert recent and all(r['service'].startswith('client.') for r in recent)


def test_a_retry_rides_through_a_restarted_gateway(client, cluster):
    pid = cluster.gateway_pids()[0]
    os.kill(pid, signal.SIGKILL)
    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    until(gone, 5, 'the gateway gone')  # the supervisor then waits 200 ms to restart it
    with pytest.raises(TransportError):
        client.invoke('client.echo', {'before': 'restart'})
    r = client.invoke('client.echo', {'after': 'restart'}, retry=Retry(attempts=20, backoff=0.2, max_backoff=1.0))
    assert r.json()['got'] == {'after': 'restart'}
    assert any(p != pid for p in cluster.gateway_pids())  # a new gateway answered
    cluster.wait_ready()


def test_users_tokens_and_the_project_folder_password(cluster, monkeypatch):
    """Another user's password, an API token (given or in SHOAL_TOKEN), and the password
    file `shoal up` writes (DIR/.shoal/admin-password), as the CLI reads them."""
    from shoal_client import Client
    from shoal_client.errors import AuthError, ShoalError
    admin = ('admin', cluster.password)
    r = httpx.post(cluster.admin_url + '/api/v1/users', auth=admin,
                   json={'name': 'client-op', 'role': 'operator', 'password': 'client-op-password'})
    assert r.status_code == 201, r.text
    try:
        with Client(cluster.admin_url, user='client-op', password='client-op-password') as c:
            assert c.invoke('client.echo', {'a': 1}).json()['got'] == {'a': 1}
            with pytest.raises(ShoalError) as e:
                c.channels.put('client-forbidden', {'type': 'http', 'service': 'client.echo',
                                                    'url_path': '/client-forbidden'})
            assert e.value.status == 403 and 'needs the admin role' in str(e.value)
        token = httpx.post(cluster.admin_url + '/api/v1/tokens', auth=('client-op', 'client-op-password'),
                           json={'description': 'client test'}).json()['token']
        with Client(cluster.admin_url, token=token) as c:
            assert c.kvdb.list('no-such-prefix/') == []
        monkeypatch.setenv('SHOAL_TOKEN', token)
        monkeypatch.delenv('SHOAL_ADMIN_PASSWORD', raising=False)
        with Client(cluster.admin_url) as c:
            assert any(s['name'] == 'client.echo' for s in c.services.list())
        monkeypatch.delenv('SHOAL_TOKEN')
        with Client(cluster.admin_url, dir=str(cluster.dir)) as c:
            assert any(s['name'] == 'client.echo' for s in c.services.list())
        monkeypatch.chdir(cluster.dir.parent)
        with pytest.raises(AuthError):
            Client(cluster.admin_url)
    finally:
        httpx.delete(cluster.admin_url + '/api/v1/users/client-op', auth=admin)


def test_the_clis_context_is_read(cluster, monkeypatch, tmp_path):
    """With no admin URL given, the client reaches the cluster of the CLI's current
    context (the file `shoal up` writes: JSON, which is YAML too), as the CLI does."""
    import json as _json
    from shoal_client import Client
    from shoal_client.errors import AuthError
    cfg = tmp_path / 'config.yaml'
    cfg.write_text(_json.dumps({'current-context': 'here', 'contexts': [
        {'name': 'here', 'admin_url': cluster.admin_url,
         'password_file': str(cluster.dir / '.shoal' / 'admin-password')},
        {'name': 'nowhere', 'admin_url': 'http://127.0.0.1:9', 'password_file': '/nonexistent'}]}))
    monkeypatch.setenv('SHOAL_CLI_CONFIG', str(cfg))
    monkeypatch.delenv('SHOAL_ADMIN_URL', raising=False)
    monkeypatch.delenv('SHOAL_ADMIN_PASSWORD', raising=False)
    monkeypatch.delenv('SHOAL_TOKEN', raising=False)
    with Client() as c:
        assert any(s['name'] == 'client.echo' for s in c.services.list())
    with pytest.raises(AuthError):
        Client(context='nowhere')   # its password file cannot be read
    with pytest.raises(AuthError) as e:
        Client(context='nope')
    assert 'here' in str(e.value)
