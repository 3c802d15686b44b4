"""The Zato-style examples of examples/services/zato_style.py, as Zato 3.2 answers them
(and better where Shoal's issue says so: a bad type is a 400, not a 500)."""

import os

import pytest

from shoal.testing import ServiceHarness

EXAMPLES = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'examples', 'services', 'zato_style.py')


@pytest.fixture(scope='module')
def h():
    return ServiceHarness(EXAMPLES)


def test_names(h):
    names = sorted(n for n, *_ in h.runtime.list_services())
    assert names == ['crm.get-customer', 'guard.json-only', 'orders.create', 'orders.status', 'orders.summary',
                     'zato-style.get-client-details', 'zato-style.my-camel-service']


def test_simpleio_wrapped_output(h):
    r = h.invoke('zato-style.get-client-details', {'client_code': 'C7', 'age': '30', 'is_vip': True})
    assert r.status_code == 200
    assert r.payload == {'response': {'name': 'Client C7', 'age': 30, 'segment': 'vip',
                                      'member_since': '2019-03-01', 'balance': '1250.50'}}


def test_simpleio_missing_and_bad_input(h):
    r = h.invoke('zato-style.get-client-details', {'age': 1})
    assert (r.status_code, r.error.message) == (400, 'Element missing: client_code')
    r = h.invoke('zato-style.get-client-details', {'client_code': 'x', 'age': 'old'})
    assert r.status_code == 400 and "'age' is not a valid Int" in r.error.message


def test_io_on_class_is_bare(h):
    r = h.invoke('crm.get-customer', {'cust_code': 'C1'})
    assert r.payload == {'cust_code': 'C1', 'name': 'Alice', 'email': None}


def test_status_headers_and_hooks(h):
    r = h.invoke('orders.create', {'sku': 'A', 'qty': 2})
    assert (r.status_code, r.payload) == (201, {'order_id': 1001, 'status': 'created'})
    assert r.headers == {'Location': '/orders/1001', 'X-Handled-By': 'orders.create'}
    r = h.invoke('orders.create', {'sku': 'A', 'qty': 0})
    assert r.status_code == 422


def test_verbs(h):
    assert h.invoke('orders.status', method='GET', query={'order_id': '5'}).payload == {'order_id': '5', 'status': 'shipped'}
    assert h.invoke('orders.status', method='DELETE').status_code == 204
    r = h.invoke('orders.status', method='POST')
    assert r.status_code == 405


def test_invoke_chain(h):
    assert h.invoke('orders.summary').payload == {'customer': 'Alice', 'order_id': 1001}


def test_accept(h):
    assert h.invoke('guard.json-only', {'a': 1}).payload == {'ok': True}
    assert h.invoke('guard.json-only', [1]).status_code == 400


def test_default_naming(h):
    assert h.invoke('zato-style.my-camel-service').payload == {'name': 'zato-style.my-camel-service'}
