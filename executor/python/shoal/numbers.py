"""Numbers that keep their value from the wire to the service and back.

A JSON integer reaches a service as an ``int`` of any size, as with CPython's ``json``. A
JSON number with a fraction or an exponent reaches it as a ``float`` when the float holds
it exactly as written (``0.1``, ``2.50``, ``1e3``); otherwise — more digits than a double
keeps, or beyond its range — as an ``ExactFloat``: a ``float`` (arithmetic, comparisons and
``isinstance(x, float)`` work as usual) that also keeps the literal it came as. Passed on
unchanged (echoed, stored, sent on), it leaves with every digit; SimpleIO's ``Decimal``
reads every digit of it; SimpleIO's ``Float`` refuses it rather than round it.

``loads`` and ``dumps`` are the SDK's JSON with these rules (the executor's own converter
when it runs there, the standard library otherwise).
"""

import decimal as _decimal
import json as _json

__all__ = ['ExactFloat', 'float_holds', 'loads', 'dumps']


class ExactFloat(float):
    """A JSON number a ``float`` cannot hold as written: the nearest float, plus
    ``literal``, the number's text as it came (``str()`` and ``repr()`` give it too)."""

    __slots__ = ('literal',)

    def __new__(cls, literal):
        literal = str(literal)
        self = float.__new__(cls, literal)
        self.literal = literal
        return self

    def __repr__(self):
        return self.literal

    __str__ = __repr__

    def __reduce__(self):
        return (ExactFloat, (self.literal,))

    def to_decimal(self):
        """The exact value, as a ``decimal.Decimal``."""
        return _decimal.Decimal(self.literal)


def float_holds(text, value=None):
    """Whether the float nearest to the number ``text`` has exactly its value (as written)."""
    if value is None:
        value = float(text)
    if value != value or value in (float('inf'), float('-inf')):
        return False
    try:
        return _decimal.Decimal(repr(value)) == _decimal.Decimal(text.strip())
    except _decimal.InvalidOperation:
        return False


def _parse_float(text):
    value = float(text)
    return value if float_holds(text, value) else ExactFloat(text)


def _native():
    try:
        import _shoal_native
    except ImportError:
        return None
    return _shoal_native if hasattr(_shoal_native, 'json_dumps') else None


def loads(data):
    """JSON text or bytes to Python, every number exact (see the module's text)."""
    native = _native()
    if native is not None:
        if isinstance(data, str):
            data = data.encode('utf-8')
        return native.json_loads(bytes(data))
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode('utf-8')
    return _json.loads(data, parse_float=_parse_float)


class _Encoder(_json.JSONEncoder):
    """The standard encoder, but an ExactFloat is written as its literal."""

    def iterencode(self, o, _one_shot=False):
        markers = {} if self.check_circular else None
        encoder = (_json.encoder.encode_basestring_ascii if self.ensure_ascii
                   else _json.encoder.encode_basestring)

        def floatstr(o, allow_nan=self.allow_nan):
            if isinstance(o, ExactFloat):
                return o.literal
            if o != o:
                text = 'NaN'
            elif o == float('inf'):
                text = 'Infinity'
            elif o == float('-inf'):
                text = '-Infinity'
            else:
                return float.__repr__(o)
            if not allow_nan:
                raise ValueError('Out of range float values are not JSON compliant: ' + repr(o))
            return text

        return _json.encoder._make_iterencode(
            markers, self.default, encoder, self.indent, floatstr, self.key_separator,
            self.item_separator, self.sort_keys, self.skipkeys, _one_shot)(o, 0)


def _sdk_default(o):
    """The executor's rules for what JSON has no form for (so both ways agree)."""
    if hasattr(o, 'to_dict'):
        return o.to_dict()
    if hasattr(o, 'isoformat'):
        return o.isoformat()
    if type(o).__name__ in ('Decimal', 'UUID'):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)) or type(o).__name__ in (
            'generator', 'map', 'filter', 'dict_keys', 'dict_values'):
        return list(o)
    if isinstance(o, bytes):
        return o.decode('utf-8', 'replace')
    raise TypeError('an object of type {} cannot be serialised to JSON'.format(type(o).__name__))


def dumps(obj, default=None):
    """Python to compact JSON bytes, every number exact. Objects JSON has no form for
    follow the executor's rules (``Decimal``, dates and UUIDs as strings, sets as lists,
    ``to_dict()``), else ``default`` is called for them (as in ``json.dumps``), else a
    ``TypeError``."""
    native = _native()
    if native is not None:
        try:
            return native.json_dumps(obj)
        except (TypeError, ValueError):
            if default is None:
                raise

    def fallback(o):
        try:
            return _sdk_default(o)
        except TypeError:
            if default is None:
                raise
            return default(o)

    return _Encoder(default=fallback, separators=(',', ':'), allow_nan=False).encode(obj).encode('utf-8')
