"""SimpleIO: declare a service's input and output once; Shoal validates and converts them.

Zato 3.2 names and rules:

    class GetCustomer(Service):
        class SimpleIO:
            input_required = 'cust_id', Int('age')
            input_optional = Bool('active'), List('tags', default=[])
            output_required = 'name',
            output_optional = Date('born')
            # or:  input = 'cust_id', '-nick'      ('-' marks optional)

A missing required input is a 400 naming the element; a value that does not convert to its
type is a 400 naming the element and the type (Zato answers 500 there).
"""

import datetime as _dt
import decimal as _decimal
import uuid as _uuid

from shoal.errors import BadRequest, SerialisationError, ServiceError  # noqa: F401 - re-exported
from shoal.numbers import ExactFloat, float_holds


class _NotGiven:
    def __repr__(self):
        return 'NotGiven'


NotGiven = _NotGiven()


class Elem:
    """A SimpleIO element: a name, a type (the class) and an optional default."""

    type_name = 'Text'

    def __init__(self, name, default=NotGiven, **kwargs):
        self.name = name
        self.default = default
        self.kwargs = kwargs

    def __repr__(self):
        return '{}({!r})'.format(type(self).__name__, self.name)

    # Subclasses override these two.
    def from_input(self, value):
        return value

    def to_output(self, value):
        return value

    def describe(self):
        """JSON-able description for the config store, OpenAPI and WSDL generators."""
        d = {'name': self.name, 'type': self.type_name}
        if self.default is not NotGiven:
            d['default'] = self.default if isinstance(self.default, (str, int, float, bool, type(None))) else repr(self.default)
        return d


def _bad(elem, value, why=''):
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + '...'
    msg = "Element '{}' is not a valid {}: {}".format(elem.name, elem.type_name, shown)
    if why:
        msg += ' ({})'.format(why)
    return BadRequest(msg, element=elem.name)


class Text(Elem):
    type_name = 'Text'

    def from_input(self, value):
        if isinstance(value, (dict, list)):
            raise _bad(self, value, 'expected a string')
        return value if isinstance(value, str) else str(value)

    def to_output(self, value):
        # Input is stringified (as Zato's Text.from_json does); output passes other JSON
        # types through so a number the service returns stays a number.
        if isinstance(value, bytes):
            return value.decode('utf-8', 'replace')
        return value


Unicode = Text


class Secret(Text):
    type_name = 'Secret'


class AsIs(Elem):
    type_name = 'AsIs'


class Opaque(AsIs):
    type_name = 'Opaque'


# Integers longer than this many digits are refused (CPython's own limit on int/str
# conversion, sys.get_int_max_str_digits(), is 4,300).
_MAX_INT_DIGITS = 4300


class Int(Elem):
    type_name = 'Int'

    def from_input(self, value):
        if isinstance(value, bool):
            raise _bad(self, value)
        if isinstance(value, int):
            return value
        if isinstance(value, ExactFloat):
            # Read from the literal: the float nearest to it may be another integer.
            d = value.to_decimal()
            if not d.is_finite() or d.adjusted() >= _MAX_INT_DIGITS:
                raise _bad(self, value, 'too large')
            if d != d.to_integral_value():
                raise _bad(self, value)
            return int(d)
        if isinstance(value, float):
            if value.is_integer():
                return int(value)
            raise _bad(self, value)
        if isinstance(value, str):
            try:
                return int(value.strip(), 10)
            except ValueError:
                raise _bad(self, value) from None
        raise _bad(self, value)

    def to_output(self, value):
        return None if value is None else self.from_input(value)


Integer = Int


class Float(Elem):
    type_name = 'Float'

    def from_input(self, value):
        if isinstance(value, bool):
            raise _bad(self, value)
        if isinstance(value, ExactFloat):
            raise _bad(self, value, _NOT_HELD)
        if isinstance(value, float):
            return value
        if isinstance(value, int):
            f = float(value)
            if float_holds(str(value), f):
                return f
            raise _bad(self, value, _NOT_HELD)
        if isinstance(value, str):
            try:
                f = float(value.strip())
            except ValueError:
                raise _bad(self, value) from None
            if f != f or f in (float('inf'), float('-inf')):
                raise _bad(self, value, 'not a finite number')
            if not float_holds(value, f):
                raise _bad(self, value, _NOT_HELD)
            return f
        raise _bad(self, value)

    def to_output(self, value):
        if isinstance(value, ExactFloat):
            return value  # leaves with the digits it came with
        return None if value is None else self.from_input(value)


_NOT_HELD = 'a Float cannot hold it without rounding; declare it Decimal'


class Decimal(Elem):
    type_name = 'Decimal'

    def from_input(self, value):
        if isinstance(value, bool) or isinstance(value, (dict, list)):
            raise _bad(self, value)
        try:
            d = _decimal.Decimal(str(value).strip())
        except (_decimal.InvalidOperation, ValueError):
            raise _bad(self, value) from None
        if not d.is_finite():
            raise _bad(self, value, 'not a finite number')
        return d

    def to_output(self, value):
        # As a string, so no precision is lost in JSON.
        return None if value is None else str(self.from_input(value))


_TRUE = {'true', '1', 'yes', 'y', 'on', 't'}
_FALSE = {'false', '0', 'no', 'n', 'off', 'f', ''}


class Bool(Elem):
    type_name = 'Bool'

    def from_input(self, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            v = value.strip().lower()
            if v in _TRUE:
                return True
            if v in _FALSE:
                return False
        raise _bad(self, value)

    def to_output(self, value):
        return None if value is None else self.from_input(value)


Boolean = Bool


class Date(Elem):
    type_name = 'Date'

    def from_input(self, value):
        if isinstance(value, _dt.datetime):
            return value.date()
        if isinstance(value, _dt.date):
            return value
        if isinstance(value, str):
            try:
                return _dt.date.fromisoformat(value.strip()[:10])
            except ValueError:
                raise _bad(self, value, 'expected YYYY-MM-DD') from None
        raise _bad(self, value)

    def to_output(self, value):
        return None if value is None else self.from_input(value).isoformat()


class DateTime(Elem):
    type_name = 'DateTime'

    def from_input(self, value):
        if isinstance(value, _dt.datetime):
            return value
        if isinstance(value, str):
            v = value.strip()
            if v.endswith('Z'):
                v = v[:-1] + '+00:00'
            try:
                return _dt.datetime.fromisoformat(v)
            except ValueError:
                raise _bad(self, value, 'expected ISO 8601') from None
        raise _bad(self, value)

    def to_output(self, value):
        return None if value is None else self.from_input(value).isoformat()


UTC = DateTime


class UUID(Elem):
    type_name = 'UUID'

    def from_input(self, value):
        if isinstance(value, _uuid.UUID):
            return value
        if isinstance(value, str):
            try:
                return _uuid.UUID(value.strip())
            except ValueError:
                raise _bad(self, value) from None
        raise _bad(self, value)

    def to_output(self, value):
        return None if value is None else str(self.from_input(value))


class List(Elem):
    type_name = 'List'

    def from_input(self, value):
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            # A query string gives one value: a comma-separated list.
            return [v for v in value.split(',')] if value else []
        raise _bad(self, value, 'expected a list')

    to_output = from_input


class CSV(Elem):
    type_name = 'CSV'

    def from_input(self, value):
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        if isinstance(value, str):
            return [v.strip() for v in value.split(',')] if value.strip() else []
        raise _bad(self, value, 'expected comma-separated values')

    def to_output(self, value):
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return ','.join(str(v) for v in value)
        return str(value)


class Dict(Elem):
    """A dict; ``Dict('address', 'street', '-zip')`` also checks its required keys."""

    type_name = 'Dict'

    def __init__(self, name, *keys, **kwargs):
        super().__init__(name, **kwargs)
        self.keys = keys

    def from_input(self, value):
        if not isinstance(value, dict):
            raise _bad(self, value, 'expected an object')
        for k in self.keys:
            key = k.name if isinstance(k, Elem) else k
            if not key.startswith('-') and key not in value:
                raise BadRequest('Element missing: {}.{}'.format(self.name, key), element='{}.{}'.format(self.name, key))
        return value

    to_output = from_input


class DictList(Elem):
    type_name = 'DictList'

    def from_input(self, value):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) for v in value):
            raise _bad(self, value, 'expected a list of objects')
        return list(value)

    to_output = from_input


ListOfDicts = DictList

# Implicit typing by name, as Zato's simple-io.conf.
_BOOL_PREFIXES = ('by_', 'has_', 'is_', 'may_', 'needs_', 'should_')
_INT_SUFFIXES = ('_count', '_id', '_size', '_timeout')
_SECRETS = ('password', 'secret_key', 'token', 'api_key', 'tls_pem', 'tls_key')


def elem_for(name):
    """The element a plain string declares: Bool/Int/Secret by name, else Text."""
    if name.startswith(_BOOL_PREFIXES):
        return Bool(name)
    if name == 'id' or name.endswith(_INT_SUFFIXES):
        return Int(name)
    if name in _SECRETS:
        return Secret(name)
    return Text(name)


def _as_tuple(v):
    if v is None:
        return ()
    if isinstance(v, (str, Elem)):
        return (v,)
    return tuple(v)


def _elements(items, optional):
    """[(Elem, is_required)] from a declaration; '-name' (or Elem('-name')) is optional."""
    out = []
    for item in _as_tuple(items):
        if isinstance(item, str):
            opt = optional or item.startswith('-')
            elem = elem_for(item.lstrip('-'))
        elif isinstance(item, Elem):
            opt = optional or item.name.startswith('-')
            item.name = item.name.lstrip('-')
            elem = item
        else:
            raise TypeError('SimpleIO elements are strings or SimpleIO types, not {!r}'.format(item))
        out.append((elem, not opt))
    return out


class Definition:
    """A service's parsed SimpleIO declaration."""

    def __init__(self, source, on_class):
        def get(name, default=None):
            return getattr(source, name, default)

        if get('input') is not None and (get('input_required') is not None or get('input_optional') is not None):
            raise ValueError("SimpleIO: use either 'input' or 'input_required'/'input_optional', not both")
        if get('output') is not None and (get('output_required') is not None or get('output_optional') is not None):
            raise ValueError("SimpleIO: use either 'output' or 'output_required'/'output_optional', not both")
        self.input = self._merge(_elements(get('input'), False) + _elements(get('input_required'), False)
                                 + _elements(get('input_optional'), True))
        self.output = self._merge(_elements(get('output'), False) + _elements(get('output_required'), False)
                                  + _elements(get('output_optional'), True))
        # Zato 3.2: a class SimpleIO wraps output in {"response": ...}; I/O on the class does not.
        default_elem = None if on_class else 'response'
        self.response_elem = get('response_elem', default_elem)
        self.skip_empty_keys = get('skip_empty_keys', False)
        self.force_empty_keys = get('force_empty_keys', False)
        common_default = get('default_value', None)
        self.default_input = get('default_input_value', common_default)
        self.default_output = get('default_output_value', common_default)

    @staticmethod
    def _merge(pairs):
        # A name both required and optional is required.
        seen = {}
        for elem, required in pairs:
            if elem.name in seen:
                prev, prev_req = seen[elem.name]
                seen[elem.name] = (prev, prev_req or required)
            else:
                seen[elem.name] = (elem, required)
        return list(seen.values())

    # -- input -------------------------------------------------------------------------
    def parse_input(self, data):
        """Validates and converts ``data`` (a dict) into the declared input."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise BadRequest('Input must be a JSON object with the elements {}'.format(
                ', '.join(e.name for e, _ in self.input)))
        out = {}
        for elem, required in self.input:
            value = data.get(elem.name, NotGiven)
            if value is NotGiven or value is None:
                if required:
                    raise BadRequest('Element missing: {}'.format(elem.name), element=elem.name)
                if elem.default is not NotGiven:
                    value = elem.default() if callable(elem.default) else elem.default
                    out[elem.name] = value
                else:
                    out[elem.name] = self.default_input
                continue
            out[elem.name] = elem.from_input(value)
        return out

    # -- output ------------------------------------------------------------------------
    def serialise(self, payload):
        """The response document for ``payload`` (a dict, list of dicts, or object)."""
        if isinstance(payload, (list, tuple)):
            body = [self._one(item) for item in payload]
        else:
            body = self._one(payload)
        if self.response_elem:
            return {self.response_elem: body}
        return body

    def _one(self, item):
        if item is None:
            item = {}
        if not isinstance(item, dict):
            if hasattr(item, 'to_dict'):
                item = item.to_dict()
            elif hasattr(item, '__dict__'):
                item = {k: v for k, v in vars(item).items() if not k.startswith('_')}
            else:
                raise SerialisationError('Output must be an object, not {}'.format(type(item).__name__))
        out = {}
        for elem, required in self.output:
            value = item.get(elem.name, NotGiven)
            if value is NotGiven:
                if required:
                    raise SerialisationError('Output element missing: {}'.format(elem.name))
                if elem.default is not NotGiven:
                    value = elem.default
                else:
                    value = self.default_output
            try:
                value = elem.to_output(value) if value is not None else None
            except BadRequest as e:
                raise SerialisationError('Output ' + e.message[0].lower() + e.message[1:]) from None
            if self._skip(elem.name, value):
                continue
            out[elem.name] = value
        return out

    def _skip(self, name, value):
        if value not in (None, '', [], {}):
            return False
        force = self.force_empty_keys
        if force is True or (isinstance(force, (list, tuple, set)) and name in force):
            return False
        skip = self.skip_empty_keys
        return skip is True or (isinstance(skip, (list, tuple, set)) and name in skip)

    def describe(self):
        return {
            'input': [dict(e.describe(), required=r) for e, r in self.input],
            'output': [dict(e.describe(), required=r) for e, r in self.output],
            'response_elem': self.response_elem,
        }


def definition_for(cls):
    """The SimpleIO definition of a service class, or None. Cached on the class."""
    cached = cls.__dict__.get('_shoal_sio', NotGiven)
    if cached is not NotGiven:
        return cached
    sio = getattr(cls, 'SimpleIO', None)
    if sio is not None:
        d = Definition(sio, on_class=False)
    elif any(getattr(cls, a, None) is not None for a in ('input', 'output', 'input_required', 'output_required')):
        d = Definition(cls, on_class=True)
    else:
        d = None
    cls._shoal_sio = d
    return d


__all__ = ['AsIs', 'Bool', 'Boolean', 'CSV', 'Date', 'DateTime', 'Decimal', 'Dict', 'DictList',
           'Float', 'Int', 'Integer', 'List', 'ListOfDicts', 'Opaque', 'Secret', 'Text', 'UTC',
           'UUID', 'Unicode', 'Elem', 'SerialisationError', 'definition_for', 'NotGiven']
