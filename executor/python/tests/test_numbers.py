"""Exact numbers in the SDK's own JSON (shoal.numbers) and in SimpleIO (issue #24)."""

import decimal

import pytest

from shoal import numbers
from shoal.numbers import ExactFloat
from shoal.testing import ServiceHarness

FORTY = '1.2345678901234567890123456789012345678901'


def test_loads_keeps_every_digit_and_dumps_writes_it_back():
    text = '[18446744073709551617,-9223372036854775809,{},0.1,1.50,1e400]'.format(FORTY)
    v = numbers.loads(text)
    assert v[0] == 2 ** 64 + 1 and v[1] == -2 ** 63 - 1
    assert isinstance(v[2], ExactFloat) and isinstance(v[2], float)
    assert v[2].literal == FORTY and str(v[2]) == FORTY
    assert type(v[3]) is float and type(v[4]) is float
    assert isinstance(v[5], ExactFloat) and v[5] == float('inf')
    assert numbers.dumps(v) == '[18446744073709551617,-9223372036854775809,{},0.1,1.5,1e400]'.format(FORTY).encode()
    # Arithmetic gives plain floats, written as floats.
    assert numbers.dumps(v[2] * 2) == b'2.4691357802469134'
    assert v[2].to_decimal() == decimal.Decimal(FORTY)


def test_dumps_follows_the_executor_rules_for_other_types():
    assert numbers.dumps({'d': decimal.Decimal('1.10'), 's': {1}}) == b'{"d":"1.10","s":[1]}'
    with pytest.raises(TypeError):
        numbers.dumps(object())
    assert numbers.dumps(object(), default=lambda o: 'x') == b'"x"'
    with pytest.raises(ValueError):
        numbers.dumps(float('nan'))


def test_float_holds():
    assert numbers.float_holds('0.1') and numbers.float_holds('2.50') and numbers.float_holds('1e3')
    assert not numbers.float_holds(FORTY)
    assert not numbers.float_holds('1e400')


SERVICES = '''
from shoal import Service, Int, Float, Decimal

class Double(Service):
    name = 't.double'
    class SimpleIO:
        input_required = Int('v')
        output_required = Int('v')
        response_elem = None
    def handle(self):
        self.response.payload.v = self.request.input.v * 2

class Flt(Service):
    name = 't.float'
    class SimpleIO:
        input_required = Float('f')
        output_required = Float('f')
        response_elem = None
    def handle(self):
        self.response.payload.f = self.request.input.f

class Dec(Service):
    name = 't.dec'
    class SimpleIO:
        input_required = Decimal('d')
        output_required = Decimal('d')
        response_elem = None
    def handle(self):
        self.response.payload.d = self.request.input.d
'''


def test_simpleio_never_rounds():
    h = ServiceHarness(SERVICES)
    assert h.invoke('t.double', {'v': 2 ** 64 + 1}).payload['v'] == 2 ** 65 + 2
    # An integral literal longer than a float holds is read from its digits.
    big = ExactFloat('1.00000000000000000000001e30')
    assert h.invoke('t.double', {'v': big}).payload['v'] == 2000000000000000000000020000000
    assert h.invoke('t.double', {'v': ExactFloat('2.0000000000000000000000001')}).status_code == 400
    r = h.invoke('t.double', {'v': ExactFloat('1e99999')})
    assert r.status_code == 400 and 'too large' in r.error.message
    # A Float refuses what it cannot hold; a Decimal takes every digit.
    r = h.invoke('t.float', {'f': ExactFloat(FORTY)})
    assert r.status_code == 400 and 'Decimal' in r.error.message
    assert h.invoke('t.float', {'f': 2 ** 64 + 1}).status_code == 400
    assert h.invoke('t.float', {'f': '3.14159265358979323846'}).status_code == 400
    assert h.invoke('t.float', {'f': 0.1}).payload['f'] == 0.1
    assert h.invoke('t.dec', {'d': ExactFloat(FORTY)}).payload['d'] == FORTY
