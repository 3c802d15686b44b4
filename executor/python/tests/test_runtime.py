"""The Python side of the executor, without a cluster: naming, deployment, invocation."""

import pytest

from shoal._runtime import Runtime, DeployError
from shoal.service import Bunch, ServiceError, service_name, uncamelify

MODULE = '''
from zato.server.service import Service

class MyCamelService(Service):
    def handle(self):
        self.response.payload = {'got': self.request.input.get('x'), 'name': self.name}

class Named(Service):
    name = 'custom.name'
    def handle(self):
        self.response.status_code = 201
        self.response.headers['X-Thing'] = 'yes'
        self.response.payload = self.invoke('bar-svc.my-camel-service', {'x': 7})

class Failing(Service):
    def handle(self):
        raise ValueError('boom')

class Refusing(Service):
    def accept(self):
        return False
'''


@pytest.fixture
def rt():
    r = Runtime()
    names, digest = r.deploy('bar_svc', MODULE, 'bar_svc.py')
    assert len(digest) == 64
    assert sorted(names) == ['bar-svc.failing', 'bar-svc.my-camel-service', 'bar-svc.refusing', 'custom.name']
    return r


def test_naming_follows_zato():
    assert uncamelify('MyCamelService') == 'my-camel-service'
    assert uncamelify('GetHTTPThing') == 'get-http-thing'

    class Svc:
        __module__ = 'my.module_x'

    Svc.__name__ = 'GetCustomer'
    assert service_name(Svc) == 'my.module-x.get-customer'


def test_invoke_merges_query_and_path_params(rt):
    status, payload, headers, ctype, _logs = rt.invoke(
        'bar-svc.my-camel-service', {'x': 1}, b'{"x": 1}', 'cid1', {'type': 'http'},
        {'method': 'GET', 'path': '/p', 'params': {}, 'query': {'x': '9'}, 'headers': {}, 'form': {}})
    assert status == 200
    # Query parameters override the body, as Zato's channel-params-over-msg default.
    assert payload == {'got': '9', 'name': 'bar-svc.my-camel-service'}


def test_status_headers_and_nested_invoke(rt):
    status, payload, headers, _, _ = rt.invoke('custom.name', None, b'', 'c', {}, None)
    assert status == 201
    assert headers == {'X-Thing': 'yes'}
    assert payload == {'got': 7, 'name': 'bar-svc.my-camel-service'}


def test_unknown_service_and_refusal(rt):
    with pytest.raises(ServiceError) as e:
        rt.invoke('nope', None, b'', 'c', {}, None)
    assert e.value.code == 'not_found'
    with pytest.raises(ServiceError) as e:
        rt.invoke('bar-svc.refusing', None, b'', 'c', {}, None)
    assert e.value.code == 'bad_request'


def test_service_exception_propagates_and_is_counted(rt):
    with pytest.raises(ValueError):
        rt.invoke('bar-svc.failing', None, b'', 'c', {}, None)
    row = [r for r in rt.list_services() if r[0] == 'bar-svc.failing'][0]
    assert row[4] == 1 and row[5] == 1  # invocations, errors


def test_broken_module_keeps_the_old_version(rt):
    with pytest.raises(DeployError) as e:
        rt.deploy('bar_svc', 'def broken(:\n', 'bar_svc.py')
    assert 'bar_svc.py:1' in str(e.value)
    with pytest.raises(DeployError) as e:
        rt.deploy('bar_svc', 'x = 1\nraise RuntimeError("at import")\n', 'bar_svc.py')
    assert 'bar_svc.py:2' in str(e.value) and 'RuntimeError' in str(e.value)
    status, _, _, _, _ = rt.invoke('bar-svc.my-camel-service', {}, b'', 'c', {}, None)
    assert status == 200


def test_redeploy_replaces_and_drops_removed_services(rt):
    rt.deploy('bar_svc', 'from shoal import Service\nclass Only(Service):\n    pass\n', 'bar_svc.py')
    names = [r[0] for r in rt.list_services()]
    assert names == ['bar-svc.only']
    assert rt.undeploy('bar_svc') == ['bar-svc.only']
    assert rt.list_services() == []


def test_bunch():
    b = Bunch(a=1)
    assert b.a == 1
    b.c = 3
    assert b['c'] == 3
    with pytest.raises(AttributeError):
        b.missing


def test_a_large_body_becomes_bytes_once_and_only_when_read():
    from shoal.service import Request

    class Buffer:
        """Stands in for the executor's buffer of a large body (``RawBody``)."""
        copies = 0

        def tobytes(self):
            Buffer.copies += 1
            return b'{"a": 1}'

    r = Request({'a': 1}, Buffer(), None, None)
    assert Buffer.copies == 0, 'not copied before it is read'
    assert r.raw_request == b'{"a": 1}' and type(r.raw_request) is bytes
    assert r.text == '{"a": 1}'
    assert Buffer.copies == 1, 'copied once'
    r.raw_request = b'other'
    assert r.raw_request == b'other'
    assert Request(None, 'text', None, None).raw_request == 'text'
    assert Request(None, None, None, None).raw_request is None
