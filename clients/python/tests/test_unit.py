"""The client's own logic without a cluster (httpx.MockTransport): which answers are
retried and how often, how errors are classified, TLS settings. Runs on every supported
Python."""

import json

import httpx
import pytest

from shoal_client import (AuthError, BadRequest, Client, NotFound, Retry, ServiceError, Timeout,
                          TransportError)
from shoal_client._core import tls_context

FAST = Retry(attempts=4, backoff=0.001, max_backoff=0.002)


def client_answering(statuses, calls):
    """A Client whose transport answers ``statuses`` in turn (an exception class raises)."""
    def handler(request):
        calls.append((request.method, request.url.path, dict(request.headers)))
        status = statuses[min(len(calls), len(statuses)) - 1]
        if isinstance(status, type):
            raise status('boom', request=request)
        body = {'ok': True} if status < 400 else {'error': {'code': 'x', 'message': 'm', 'cid': 'c'}}
        return httpx.Response(status, json=body, headers={'x-shoal-cid': 'c'})
    return Client('http://shoal.test', password='pw', read_retry=FAST,
                  transport=httpx.MockTransport(handler))


def test_reads_are_retried_on_503_and_transport_errors():
    calls = []
    with client_answering([503, httpx.ConnectError, 200], calls) as c:
        assert c.cluster() == {'ok': True}
    assert len(calls) == 3


def test_never_on_4xx_nor_500():
    for status, cls in [(400, BadRequest), (401, AuthError), (404, NotFound), (409, BadRequest),
                        (500, ServiceError)]:
        calls = []
        with client_answering([status, 200], calls) as c:
            with pytest.raises(cls) as e:
                c.cluster()
        assert len(calls) == 1, status
        assert e.value.status == status and e.value.cid == 'c'


def test_invoke_is_retried_only_when_asked():
    calls = []
    with client_answering([503, 200], calls) as c:
        with pytest.raises(ServiceError):
            c.invoke('svc', {'a': 1})
    assert len(calls) == 1
    calls = []
    with client_answering([503, 502, 200], calls) as c:
        assert c.invoke('svc', {'a': 1}, retry=FAST, cid='k1', timeout=2).status == 200
    assert len(calls) == 3
    method, path, headers = calls[0]
    assert (method, path) == ('POST', '/api/v1/services/svc/invoke')
    assert headers['x-shoal-cid'] == 'k1' and headers['x-shoal-timeout-ms'] == '2000'
    assert headers['authorization'].startswith('Basic ')


def test_writes_are_not_retried():
    calls = []
    with client_answering([503, 200], calls) as c:
        with pytest.raises(ServiceError):
            c.rollback('m')
    assert len(calls) == 1


def test_errors_give_up_after_the_attempts():
    calls = []
    with client_answering([httpx.ConnectError], calls) as c:
        with pytest.raises(TransportError):
            c.cluster()
    assert len(calls) == 4
    calls = []
    with client_answering([httpx.ReadTimeout], calls) as c:
        with pytest.raises(Timeout):
            c.invoke('svc')
    assert len(calls) == 1


def test_504_is_a_timeout_and_element_is_read():
    def handler(request):
        if request.url.path.endswith('slow/invoke'):
            return httpx.Response(504, json={'error': {'code': 'timeout', 'message': 'late', 'cid': 'c9'}})
        return httpx.Response(400, json={'error': {'code': 'bad_request', 'message': 'Element missing: a',
                                                   'cid': 'c8', 'element': 'a'}})
    with Client('http://shoal.test', password='pw', transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(Timeout) as t:
            c.invoke('slow')
        assert (t.value.status, t.value.code, t.value.cid) == (504, 'timeout', 'c9')
        with pytest.raises(BadRequest) as b:
            c.invoke('sio')
        assert b.value.element == 'a'


def test_payloads_and_paths_are_encoded():
    seen = []

    def handler(request):
        seen.append((request.url.raw_path, request.content))
        return httpx.Response(200, json={})
    with Client('http://shoal.test/', password='pw', transport=httpx.MockTransport(handler)) as c:
        c.invoke('a b/c', {'x': [1, 2]})
        c.kvdb.set('k/1', 'v', expiry=5)
    assert seen[0] == (b'/api/v1/services/a%20b%2Fc/invoke', json.dumps({'x': [1, 2]}).encode())
    assert seen[1] == (b'/api/v1/kvdb/k%2F1?expiry=5', b'v')


def test_tls_options():
    assert tls_context(True, None, None) is True
    assert tls_context(False, None, None) is False
    with pytest.raises(ValueError):
        tls_context(False, 'ca.pem', None)
    with pytest.raises(FileNotFoundError):
        tls_context(True, '/no/such/ca.pem', None)


def test_password_from_the_environment(monkeypatch):
    monkeypatch.delenv('SHOAL_ADMIN_PASSWORD', raising=False)
    with pytest.raises(AuthError):
        Client('http://shoal.test')
    monkeypatch.setenv('SHOAL_ADMIN_PASSWORD', 'from-env')
    Client('http://shoal.test').close()
