"""shoal.testing: what users write in their own test suites."""

import types

from shoal import Service
from shoal.testing import ServiceHarness, ServiceTestCase

SOURCE = '''
from zato.server.service import Service, Int

class Quote(Service):
    name = 'shop.quote'
    class SimpleIO:
        input_required = Int('qty'),
        output_required = 'total', 'currency'

    def handle(self):
        price = self.invoke('shop.price', {'sku': 'x'})['price']
        rate = self.out.rest['fx'].rate('EUR')
        self.response.payload.total = self.request.input.qty * price * rate
        self.response.payload.currency = 'EUR'
'''


class FakeFx:
    def rate(self, currency):
        return 2


def test_harness_with_stubs():
    h = ServiceHarness(SOURCE)
    h.stub_invoke('shop.price', {'price': 5})
    h.stub_outgoing('rest', 'fx', FakeFx())
    resp = h.invoke('shop.quote', {'qty': '3'})
    assert resp.status_code == 200
    assert resp.payload == {'response': {'total': 30, 'currency': 'EUR'}}


def test_harness_errors_are_responses():
    h = ServiceHarness(SOURCE)
    resp = h.invoke('shop.quote', {})
    assert resp.status_code == 400
    assert resp.error.message == 'Element missing: qty'
    resp = h.invoke('shop.quote', {'qty': 1})
    # shop.price is not stubbed and not deployed
    assert resp.status_code == 404
    resp = h.invoke('no.such')
    assert resp.status_code == 404


def test_unwired_outgoing_is_a_clear_error():
    h = ServiceHarness(SOURCE)
    h.stub_invoke('shop.price', lambda payload: {'price': len(payload['sku'])})
    resp = h.invoke('shop.quote', {'qty': 1})
    assert resp.status_code == 500
    assert resp.error.message == "outgoing HTTP connection 'fx' is not configured"


def test_module_objects_and_classes():
    mod = types.ModuleType('mymod')

    class Hello(Service):
        def handle(self):
            self.response.payload = {'hi': self.request.input.get('who', 'x')}

    Hello.__module__ = 'mymod'
    mod.Hello = Hello
    h = ServiceHarness(mod)
    assert h.invoke('mymod.hello', {'who': 'y'}).payload == {'hi': 'y'}
    h2 = ServiceHarness(Hello)
    assert h2.invoke(Hello, query={'who': 'q'}).payload == {'hi': 'q'}


class ZatoStyle(ServiceTestCase):
    def test_invoke_service(self):
        self.import_services(SOURCE)
        self.harness.stub_invoke('shop.price', {'price': 1})
        self.harness.stub_outgoing('plain_http', 'fx', FakeFx())
        resp = self.invoke_service('shop.quote', {'qty': 2})
        self.assertEqual(resp.payload['response']['total'], 4)
