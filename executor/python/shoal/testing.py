"""Unit-test services with plain pytest (or unittest), no cluster needed.

    from shoal.testing import ServiceHarness
    import crm                                    # your module of services

    def test_get_customer():
        h = ServiceHarness(crm)
        h.stub_invoke('billing.balance', {'balance': '10.00'})
        resp = h.invoke('crm.get-customer', {'cust_code': 'C1'}, method='GET')
        assert resp.status_code == 200
        assert resp.payload == {'response': {'name': 'Alice', 'balance': '10.00'}}

The service runs exactly as in an executor: SimpleIO validation and serialisation,
``handle_<VERB>`` dispatch, hooks, status codes and headers. Errors come back as a
response with the status the gateway would answer (``resp.error`` holds code and message);
anything else the service raises propagates, so the test shows its traceback.
"""

import inspect
import json
import os
import types
import unittest

from shoal import numbers
from shoal.kvdb import MemoryTransport
from shoal._runtime import Runtime
from shoal.service import Service, ServiceError, new_cid

# The same table as Shoal's error codes (common/src/error.rs).
STATUS = {
    'bad_request': 400, 'unauthorized': 401, 'forbidden': 403, 'not_found': 404,
    'method_not_allowed': 405, 'conflict': 409, 'payload_too_large': 413, 'uri_too_long': 414,
    'too_many_requests': 429, 'service_error': 500, 'internal': 500, 'bad_gateway': 502,
    'unavailable': 503, 'timeout': 504, 'not_configured': 500, 'remote_error': 502,
    'request_timeout': 408,
}


class Error:
    def __init__(self, code, message):
        self.code = code
        self.message = message

    def __repr__(self):
        return 'Error({!r}, {!r})'.format(self.code, self.message)


class TestResponse:
    """What a service answered: ``status_code``, ``payload``, ``headers``,
    ``content_type``, and ``error`` (None on success)."""

    def __init__(self, status_code, payload, headers, content_type, error=None, cid=''):
        self.status_code = status_code
        self.payload = payload
        self.headers = headers
        self.content_type = content_type
        self.error = error
        self.cid = cid

    @property
    def json(self):
        """The payload as it travels on a JSON channel (dates and decimals as strings)."""
        return numbers.loads(numbers.dumps(self.payload, default=str))

    def __repr__(self):
        return '<TestResponse {} {!r}>'.format(self.status_code, self.payload)


class ServiceHarness:
    """An in-memory runtime holding the services under test."""

    def __init__(self, *sources):
        self.runtime = Runtime()
        # self.cache and self.kvdb work in tests, on an in-process store with the KVDB's
        # semantics (expiry, counters, hashes, lists, sets, WRONGTYPE).
        self.runtime.kv = MemoryTransport()
        for s in sources:
            self.add(s)

    def add(self, source):
        """Adds services from a module object, a service class, a ``.py`` path, or source
        code. Returns their names."""
        if inspect.isclass(source) and issubclass(source, Service):
            return self.runtime.register(source.__module__, [source])
        if isinstance(source, types.ModuleType):
            classes = [c for _, c in inspect.getmembers(source, inspect.isclass)
                       if issubclass(c, Service) and c is not Service and c.__module__ == source.__name__]
            return self.runtime.register(source.__name__, classes)
        if isinstance(source, str) and source.endswith('.py') and os.path.exists(source):
            with open(source, encoding='utf-8') as f:
                code = f.read()
            name = os.path.splitext(os.path.basename(source))[0]
            return self.runtime.deploy(name, code, source)[0]
        if isinstance(source, str):
            return self.runtime.deploy('test_module', source, '<test source>')[0]
        raise TypeError('cannot add services from {!r}'.format(source))

    def invoke(self, service, payload=None, method='', query=None, params=None, headers=None,
               channel='test', channel_type='http', raw_request=None, cid=None):
        """Invokes ``service`` (a name or a class) as a channel would."""
        name = service if isinstance(service, str) else service.get_name()
        http = {'method': method.upper(), 'path': '', 'params': params or {}, 'query': query or {},
                'headers': {k.lower(): v for k, v in (headers or {}).items()}, 'form': {}}
        raw = raw_request if raw_request is not None else numbers.dumps(payload, default=str)
        cid = cid or new_cid()
        try:
            status, out, hdrs, ctype, _logs = self.runtime.invoke(
                name, payload, raw, cid, {'name': channel, 'type': channel_type, 'data_format': 'json'}, http)
        except ServiceError as e:
            return TestResponse(STATUS.get(e.code, 500), None, {}, None, Error(e.code, e.message), cid)
        return TestResponse(status, out, hdrs, ctype, None, cid)

    def stub_invoke(self, service, response):
        """Makes ``self.invoke(service, ...)`` return ``response`` (or call it with the
        payload, when it is callable)."""
        self.runtime.stubs[service] = response if callable(response) else (lambda _payload: response)

    def stub_outgoing(self, kind, name, connection):
        """Makes ``self.out.<kind>[name]`` return ``connection``."""
        kind = {'plain_http': 'rest', 'wmq': 'ibm_mq', 'jms_wmq': 'ibm_mq'}.get(kind, kind)
        self.runtime.outgoing.setdefault(kind, {})[name] = connection

    def stub_cache(self, cache, name='default'):
        """Makes ``self.cache.default`` (or ``self.cache[name]``) return ``cache``."""
        self.runtime.caches[name] = cache

    def stub_kvdb(self, conn):
        """Makes ``self.kvdb.conn`` return ``conn``."""
        self.runtime.kvdb_conn = conn


class ServiceTestCase(unittest.TestCase):
    """Zato's ``zato.testing.ServiceTestCase`` names on top of :class:`ServiceHarness`."""

    def setUp(self):
        super().setUp()
        self.harness = ServiceHarness()

    def import_services(self, source):
        return self.harness.add(source)

    def invoke_service(self, service, request=None, **kwargs):
        return self.harness.invoke(service, request, **kwargs)
