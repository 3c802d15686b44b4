"""SimpleIO as Zato 3.2 defines it, and where Shoal does better (400 for a bad type)."""

import datetime
import decimal
import uuid

import pytest

from shoal._runtime import Runtime, DeployError
from shoal.service import ServiceError

MODULE = '''
from zato.server.service import Service, Int, Bool, List, Date, DateTime, Decimal, UUID, Float, CSV, Dict, DictList, AsIs

class Customer(Service):
    name = 'sio.customer'
    class SimpleIO:
        input_required = 'cust_code', Int('age')
        input_optional = Bool('active'), List('tags', default=[]), 'nick', Date('born')
        output_required = 'name', Int('age')
        output_optional = 'nick', Date('born'), Decimal('balance')

    def handle(self):
        i = self.request.input
        self.response.payload.name = 'Cust {}'.format(i.cust_code)
        self.response.payload.age = i.age
        self.response.payload.born = i.born
        self.response.payload.balance = decimal.Decimal('10.50') if i.active else None

import decimal

class Bare(Service):
    name = 'sio.bare'
    class SimpleIO:
        input = 'user_id', '-is_admin', '-item_count'
        output = 'user_id', '-is_admin'
        response_elem = None
        skip_empty_keys = True

    def handle(self):
        self.response.payload = {'user_id': self.request.input.user_id, 'is_admin': self.request.input.is_admin}

class OnClass(Service):
    name = 'sio.on-class'
    input = 'a'
    output = 'a', '-b'

    def handle(self):
        self.response.payload = {'a': self.request.input.a}

class Rows(Service):
    name = 'sio.rows'
    class SimpleIO:
        output = 'id', 'label'

    def handle(self):
        self.response.payload[:] = [{'id': 1, 'label': 'x'}, {'id': 2, 'label': 'y'}]

class BadOutput(Service):
    name = 'sio.bad-output'
    class SimpleIO:
        output_required = 'must'

    def handle(self):
        self.response.payload = {'other': 1}

class Types(Service):
    name = 'sio.types'
    class SimpleIO:
        input_optional = Float('f'), UUID('u'), DateTime('dt'), CSV('c'), Dict('d', 'k'), DictList('dl'), AsIs('raw')
        response_elem = None

    def handle(self):
        i = self.request.input
        self.response.payload = {'f': i.f, 'u': str(i.u) if i.u else None, 'dt': i.dt.isoformat() if i.dt else None,
                                 'c': i.c, 'd': i.d, 'dl': i.dl, 'raw': i.raw}

class Verbs(Service):
    name = 'sio.verbs'
    def handle_GET(self):
        self.response.payload = {'verb': 'GET'}
    def handle_POST(self):
        self.response.status_code = 201
        self.response.payload = {'verb': 'POST'}
'''


@pytest.fixture(scope='module')
def rt():
    r = Runtime()
    r.deploy('siomod', MODULE, 'siomod.py')
    return r


def call(rt, name, payload=None, method='', query=None, params=None):
    http = {'method': method, 'path': '/', 'params': params or {}, 'query': query or {}, 'headers': {}, 'form': {}}
    # (status, payload, headers, content type): the log lines are the call details'.
    return rt.invoke(name, payload, b'', 'cid', {'type': 'http'}, http)[:4]


def test_wraps_output_in_response_and_converts_types(rt):
    status, payload, _, _ = call(rt, 'sio.customer', {'cust_code': 'c1', 'age': '42', 'active': 'yes', 'born': '1990-05-01'})
    assert status == 200
    assert payload == {'response': {'name': 'Cust c1', 'age': 42, 'nick': None, 'born': '1990-05-01', 'balance': '10.50'}}


def test_missing_input_is_400_naming_the_element(rt):
    with pytest.raises(ServiceError) as e:
        call(rt, 'sio.customer', {'age': 1})
    assert e.value.code == 'bad_request'
    assert e.value.message == 'Element missing: cust_code'
    assert e.value.element == 'cust_code'


@pytest.mark.parametrize('payload,needle', [
    ({'cust_code': 'x', 'age': 'forty'}, "Element 'age' is not a valid Int: 'forty'"),
    ({'cust_code': 'x', 'age': True}, "'age' is not a valid Int"),
    ({'cust_code': 'x', 'age': 1.5}, "'age' is not a valid Int"),
    ({'cust_code': 'x', 'age': 1, 'active': 'maybe'}, "'active' is not a valid Bool"),
    ({'cust_code': 'x', 'age': 1, 'tags': {'a': 1}}, "'tags' is not a valid List"),
    ({'cust_code': 'x', 'age': 1, 'born': '01/05/1990'}, "'born' is not a valid Date"),
    ({'cust_code': {'nested': 1}, 'age': 1}, "'cust_code' is not a valid Text"),
])
def test_wrong_types_are_400_naming_element_and_type(rt, payload, needle):
    with pytest.raises(ServiceError) as e:
        call(rt, 'sio.customer', payload)
    assert e.value.code == 'bad_request'
    assert e.value.element in needle
    assert needle in e.value.message


def test_non_object_input_is_400(rt):
    with pytest.raises(ServiceError) as e:
        call(rt, 'sio.customer', [1, 2])
    assert e.value.code == 'bad_request'


def test_query_and_path_params_merge_into_input(rt):
    status, payload, _, _ = call(rt, 'sio.customer', None, query={'age': '7'}, params={'cust_code': 'p9'})
    assert payload['response']['name'] == 'Cust p9'
    assert payload['response']['age'] == 7


def test_implicit_types_bare_response_and_skip_empty(rt):
    _, payload, _, _ = call(rt, 'sio.bare', {'user_id': '12', 'is_admin': 'false', 'item_count': '3'})
    assert payload == {'user_id': 12, 'is_admin': False}
    _, payload, _, _ = call(rt, 'sio.bare', {'user_id': 5})
    assert payload == {'user_id': 5}
    with pytest.raises(ServiceError) as e:
        call(rt, 'sio.bare', {'user_id': 'abc'})
    assert "'user_id' is not a valid Int" in e.value.message


def test_io_on_the_class_is_not_wrapped(rt):
    _, payload, _, _ = call(rt, 'sio.on-class', {'a': 'x'})
    assert payload == {'a': 'x', 'b': None}


def test_repeated_output_with_slice_assignment(rt):
    _, payload, _, _ = call(rt, 'sio.rows')
    assert payload == {'response': [{'id': 1, 'label': 'x'}, {'id': 2, 'label': 'y'}]}


def test_missing_required_output_is_a_service_error(rt):
    with pytest.raises(ServiceError) as e:
        call(rt, 'sio.bad-output')
    assert e.value.code == 'service_error'
    assert 'Output element missing: must' in e.value.message


def test_other_types(rt):
    u = str(uuid.uuid4())
    _, payload, _, _ = call(rt, 'sio.types', {'f': '2.5', 'u': u, 'dt': '2024-01-02T03:04:05Z', 'c': 'a, b',
                                              'd': {'k': 1}, 'dl': [{'x': 1}], 'raw': {'any': [1]}})
    assert payload == {'f': 2.5, 'u': u, 'dt': '2024-01-02T03:04:05+00:00', 'c': ['a', 'b'],
                       'd': {'k': 1}, 'dl': [{'x': 1}], 'raw': {'any': [1]}}
    for bad in ({'f': 'nan'}, {'u': 'not-a-uuid'}, {'dt': 'yesterday'}, {'d': {'no_k': 1}}, {'dl': [1]}):
        with pytest.raises(ServiceError) as e:
            call(rt, 'sio.types', bad)
        assert e.value.code == 'bad_request', bad


def test_handle_verb_dispatch_and_405(rt):
    status, payload, _, _ = call(rt, 'sio.verbs', method='GET')
    assert (status, payload) == (200, {'verb': 'GET'})
    status, payload, _, _ = call(rt, 'sio.verbs', method='POST')
    assert (status, payload) == (201, {'verb': 'POST'})
    with pytest.raises(ServiceError) as e:
        call(rt, 'sio.verbs', method='DELETE')
    assert e.value.code == 'method_not_allowed'
    assert 'GET, POST' in e.value.message


def test_input_and_input_required_together_fail_the_deploy():
    r = Runtime()
    src = 'from shoal import Service\nclass X(Service):\n    class SimpleIO:\n        input = "a"\n        input_required = "b"\n'
    with pytest.raises(DeployError) as e:
        r.deploy('both', src, 'both.py')
    assert 'either' in str(e.value)
