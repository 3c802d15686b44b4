"""The KVDB and the cache: ``self.kvdb.conn`` (a redis-py-like client, as Zato 2.0 code
uses it) and ``self.cache`` (Zato 3.2's cache API), both over the cluster's KVDB proxy
(Redis, or memory with ``shoal up``'s defaults).

Both sit on a *transport*: in an executor, calls go through Rust to a KVDB proxy and
release the GIL while they wait; under ``shoal.testing`` an in-process memory store with
the same semantics stands in, so services that use the cache are unit-testable.
"""

import re
import threading
import time

from shoal import numbers
from shoal.errors import (  # noqa: F401 - re-exported under redis-py's names
    ServiceError, KVDBError, KVDBConnectionError as ConnectionError, ResponseError, DataError)


_ERRORS = {'unavailable': ConnectionError, 'invalid_argument': DataError}


# -- transports ---------------------------------------------------------------------------

class NativeTransport:
    """Through the executor's native module to a KVDB proxy."""

    def __init__(self, native):
        self._call = native.kvdb_call

    def call(self, family, op='', key='', fields=(), values=(), a=0, b=0):
        err, msg, found, count, out_fields, out_values = self._call(
            family, op, key, list(fields), list(values), int(a), int(b))
        if err is not None:
            raise _ERRORS.get(err, ResponseError)(msg)
        return found, count, out_fields, out_values


class MemoryTransport:
    """The same semantics in this process (``shoal.testing``'s default)."""

    def __init__(self):
        self._items = {}          # key -> [kind, value, expires_at or None]
        self._lock = threading.Lock()

    def _live(self, key):
        item = self._items.get(key)
        if item is not None and item[2] is not None and item[2] <= time.monotonic():
            del self._items[key]
            return None
        return item

    def _typed(self, key, kind, create):
        item = self._live(key)
        if item is None:
            if not create:
                return None
            item = self._items[key] = [kind, {'hash': dict, 'list': list, 'set': set}[kind](), None]
        if item[0] != kind:
            raise ResponseError('WRONGTYPE: key {} holds a value of another type'.format(key))
        return item

    def call(self, family, op='', key='', fields=(), values=(), a=0, b=0):
        with self._lock:
            return self._call(family, op, key, list(fields), list(values), a, b)

    def _call(self, family, op, key, fields, values, a, b):
        now = time.monotonic()
        if family == 'get':
            item = self._live(key)
            if item is None:
                return False, 0, [], [b'']
            if item[0] != 'str':
                raise ResponseError('WRONGTYPE: key {} holds a value of another type'.format(key))
            return True, 0, [], [item[1]]
        if family == 'set':
            if b and self._live(key) is not None:
                return False, 0, [], []
            self._items[key] = ['str', values[0] if values else b'', now + a / 1000.0 if a > 0 else None]
            return True, 0, [], []
        if family == 'delete':
            n = 0
            for k in fields:
                if self._live(k) is not None:
                    del self._items[k]
                    n += 1
            return False, n, [], []
        if family == 'exists':
            return self._live(key) is not None, 0, [], []
        if family == 'expire':
            item = self._live(key)
            if item is None:
                return False, 0, [], []
            item[2] = now + max(a, 1) / 1000.0
            return True, 0, [], []
        if family == 'ttl':
            item = self._live(key)
            if item is None:
                return False, -2, [], []
            if item[2] is None:
                return False, -1, [], []
            return False, max(0, int((item[2] - now) * 1000)), [], []
        if family == 'incr':
            item = self._live(key)
            if item is None:
                item = self._items[key] = ['str', b'0', None]
            if item[0] != 'str':
                raise ResponseError('WRONGTYPE: key {} holds a value of another type'.format(key))
            try:
                value = int(item[1]) + a
            except ValueError:
                raise ResponseError('value is not an integer or out of range')
            item[1] = str(value).encode()
            return True, value, [], []
        if family == 'scan':
            keys = sorted(k for k in list(self._items) if k.startswith(key) and self._live(k) is not None)
            return True, 0, keys[:a] if a else keys, []
        if family == 'hash':
            item = self._typed(key, 'hash', op == 'hset')
            h = item[1] if item else {}
            if op == 'hset':
                added = 0
                for f, v in zip(fields, values):
                    added += f not in h
                    h[f] = v
                return False, added, [], []
            if op == 'hget':
                return (fields[0] in h), 0, [], ([h[fields[0]]] if fields[0] in h else [])
            if op == 'hdel':
                n = sum(1 for f in fields if h.pop(f, None) is not None)
                return False, n, [], []
            if op in ('hgetall', 'hkeys'):
                ks = sorted(h)
                return False, len(ks), ks, [h[k] for k in ks] if op == 'hgetall' else []
            if op == 'hexists':
                return fields[0] in h, 0, [], []
            if op == 'hlen':
                return False, len(h), [], []
        if family == 'list':
            item = self._typed(key, 'list', op in ('lpush', 'rpush'))
            lst = item[1] if item else []
            if op == 'lpush':
                for v in values:
                    lst.insert(0, v)
                return False, len(lst), [], []
            if op == 'rpush':
                lst.extend(values)
                return False, len(lst), [], []
            if op in ('lpop', 'rpop'):
                if not lst:
                    return False, 0, [], []
                return True, 0, [], [lst.pop(0) if op == 'lpop' else lst.pop()]
            if op == 'lrange':
                n = len(lst)
                start = a if a >= 0 else max(n + a, 0)
                stop = b if b >= 0 else n + b
                got = lst[start:stop + 1] if stop >= start else []
                return False, len(got), [], got
            if op == 'llen':
                return False, len(lst), [], []
        if family == 'set_op':
            item = self._typed(key, 'set', op == 'sadd')
            s = item[1] if item else set()
            if op == 'sadd':
                n = 0
                for v in values:
                    n += v not in s
                    s.add(v)
                return False, n, [], []
            if op == 'srem':
                n = sum(1 for v in values if v in s)
                s.difference_update(values)
                return False, n, [], []
            if op == 'smembers':
                return False, len(s), [], sorted(s)
            if op == 'sismember':
                return values[0] in s, 0, [], []
            if op == 'scard':
                return False, len(s), [], []
        raise DataError('unknown KVDB command {} {}'.format(family, op))


# -- the redis-py-like client ---------------------------------------------------------------

def _enc(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode('utf-8')
    if isinstance(value, bool) or value is None:
        raise DataError('invalid input of type {}: convert to a str, bytes or number first'.format(
            type(value).__name__))
    if isinstance(value, (int, float)):
        return repr(value).encode('ascii')
    raise DataError('invalid input of type {}: convert to a str, bytes or number first'.format(
        type(value).__name__))


def _dec(value):
    """Values come back as str (UTF-8), as Zato code expects; binary values as bytes."""
    try:
        return value.decode('utf-8')
    except UnicodeDecodeError:
        return value


def _key(name):
    if isinstance(name, bytes):
        name = name.decode('utf-8')
    if not isinstance(name, str) or not name:
        raise DataError('a key is a non-empty str')
    return name


def _seconds_ms(t):
    if hasattr(t, 'total_seconds'):
        t = t.total_seconds()
    return int(round(float(t) * 1000))


def _prefix_of(pattern):
    """The prefix of a 'prefix*' glob; other patterns are not supported by the KVDB API."""
    if pattern in (None, '*'):
        return ''
    body = pattern[:-1] if pattern.endswith('*') else pattern
    if any(ch in body for ch in '*?[]'):
        raise DataError("only 'prefix*' patterns are supported, not {!r}".format(pattern))
    return body


class KVDBConnection:
    """``self.kvdb.conn``: the redis-py commands Zato services use, over the KVDB proxy.
    Values come back as str (bytes when they are not UTF-8)."""

    def __init__(self, transport):
        self._t = transport

    def ping(self):
        self._t.call('exists', key='ping')
        return True

    # strings
    def get(self, name):
        found, _, _, values = self._t.call('get', key=_key(name))
        return _dec(values[0]) if found else None

    def mget(self, keys, *args):
        keys = list(keys) if isinstance(keys, (list, tuple)) else [keys]
        return [self.get(k) for k in keys + list(args)]

    def set(self, name, value, ex=None, px=None, nx=False, xx=False):
        if xx:
            raise DataError('set(xx=True) is not supported by the KVDB')
        ms = _seconds_ms(ex) if ex is not None else (int(px) if px is not None else 0)
        if (ex is not None or px is not None) and ms <= 0:
            raise DataError('invalid expire time in set')
        written, _, _, _ = self._t.call('set', key=_key(name), values=[_enc(value)], a=ms, b=1 if nx else 0)
        return True if written else None

    def setex(self, name, time, value):
        return self.set(name, value, ex=time)

    def psetex(self, name, time_ms, value):
        return self.set(name, value, px=time_ms)

    def setnx(self, name, value):
        return bool(self.set(name, value, nx=True))

    def delete(self, *names):
        if not names:
            return 0
        return self._t.call('delete', fields=[_key(n) for n in names])[1]

    def exists(self, *names):
        return sum(1 for n in names if self._t.call('exists', key=_key(n))[0])

    def expire(self, name, time):
        return self._t.call('expire', key=_key(name), a=_seconds_ms(time))[0]

    def pexpire(self, name, time_ms):
        return self._t.call('expire', key=_key(name), a=int(time_ms))[0]

    def pttl(self, name):
        return self._t.call('ttl', key=_key(name))[1]

    def ttl(self, name):
        ms = self.pttl(name)
        return ms if ms < 0 else (ms + 999) // 1000

    def incr(self, name, amount=1):
        return self._t.call('incr', key=_key(name), a=int(amount))[1]

    incrby = incr

    def decr(self, name, amount=1):
        return self.incr(name, -int(amount))

    decrby = decr

    def keys(self, pattern='*'):
        prefix = _prefix_of(pattern)
        keys = self._t.call('scan', key=prefix)[2]
        return keys if pattern in (None, '*') or pattern.endswith('*') else [k for k in keys if k == pattern]

    def scan_iter(self, match=None, count=None):
        return iter(self.keys(match or '*'))

    # hashes
    def hset(self, name, key=None, value=None, mapping=None):
        fields, values = [], []
        if key is not None:
            fields.append(str(key))
            values.append(_enc(value))
        for k, v in (mapping or {}).items():
            fields.append(str(k))
            values.append(_enc(v))
        if not fields:
            raise DataError("hset needs key and value, or mapping")
        return self._t.call('hash', 'hset', _key(name), fields, values)[1]

    def hmset(self, name, mapping):
        self.hset(name, mapping=mapping)
        return True

    def hget(self, name, key):
        found, _, _, values = self._t.call('hash', 'hget', _key(name), [str(key)])
        return _dec(values[0]) if found else None

    def hmget(self, name, keys, *args):
        keys = list(keys) if isinstance(keys, (list, tuple)) else [keys]
        return [self.hget(name, k) for k in keys + list(args)]

    def hdel(self, name, *keys):
        return self._t.call('hash', 'hdel', _key(name), [str(k) for k in keys])[1]

    def hgetall(self, name):
        _, _, fields, values = self._t.call('hash', 'hgetall', _key(name))
        return {f: _dec(v) for f, v in zip(fields, values)}

    def hkeys(self, name):
        return self._t.call('hash', 'hkeys', _key(name))[2]

    def hvals(self, name):
        return list(self.hgetall(name).values())

    def hexists(self, name, key):
        return self._t.call('hash', 'hexists', _key(name), [str(key)])[0]

    def hlen(self, name):
        return self._t.call('hash', 'hlen', _key(name))[1]

    # lists
    def lpush(self, name, *values):
        return self._t.call('list', 'lpush', _key(name), values=[_enc(v) for v in values])[1]

    def rpush(self, name, *values):
        return self._t.call('list', 'rpush', _key(name), values=[_enc(v) for v in values])[1]

    def lpop(self, name):
        found, _, _, values = self._t.call('list', 'lpop', _key(name))
        return _dec(values[0]) if found else None

    def rpop(self, name):
        found, _, _, values = self._t.call('list', 'rpop', _key(name))
        return _dec(values[0]) if found else None

    def lrange(self, name, start, end):
        return [_dec(v) for v in self._t.call('list', 'lrange', _key(name), a=start, b=end)[3]]

    def llen(self, name):
        return self._t.call('list', 'llen', _key(name))[1]

    # sets
    def sadd(self, name, *values):
        return self._t.call('set_op', 'sadd', _key(name), values=[_enc(v) for v in values])[1]

    def srem(self, name, *values):
        return self._t.call('set_op', 'srem', _key(name), values=[_enc(v) for v in values])[1]

    def smembers(self, name):
        return set(_dec(v) for v in self._t.call('set_op', 'smembers', _key(name))[3])

    def sismember(self, name, value):
        return self._t.call('set_op', 'sismember', _key(name), values=[_enc(value)])[0]

    def scard(self, name):
        return self._t.call('set_op', 'scard', _key(name))[1]


# -- Zato 3.2's cache API ---------------------------------------------------------------------

_MISSING = object()


def _pack(value):
    if isinstance(value, bytes):
        return b'\x00' + value
    try:
        return numbers.dumps(value)
    except (TypeError, ValueError) as e:
        raise DataError('a cache value must be bytes or JSON-serialisable: {}'.format(e))


def _unpack(raw):
    if raw[:1] == b'\x00':
        return raw[1:]
    try:
        return numbers.loads(raw)
    except ValueError:
        return _dec(raw)


class CacheEntry:
    """What ``get(..., details=True)`` returns."""

    def __init__(self, key, value, expiry):
        self.key = key
        self.value = value
        self.expiry = expiry   # seconds left, 0.0 when the entry never expires

    def __repr__(self):
        return '<CacheEntry key={!r} expiry={}>'.format(self.key, self.expiry)


class Cache:
    """One named cache (``self.cache.default``, ``self.cache['name']``). Values are JSON
    documents or bytes, shared by every executor of the cluster; ``expiry`` is in seconds
    (0: never)."""

    def __init__(self, transport, name):
        self._t = transport
        self.name = name
        self._prefix = 'cache/{}/'.format(name)

    def _k(self, key):
        return self._prefix + str(key)

    def get(self, key, default=None, details=False):
        found, _, _, values = self._t.call('get', key=self._k(key))
        if not found:
            return default
        value = _unpack(values[0])
        if details:
            ttl = self._t.call('ttl', key=self._k(key))[1]
            return CacheEntry(key, value, ttl / 1000.0 if ttl > 0 else 0.0)
        return value

    def set(self, key, value, expiry=0.0, details=False):
        ms = int(round(float(expiry or 0) * 1000))
        if ms < 0:
            raise DataError('expiry must not be negative')
        self._t.call('set', key=self._k(key), values=[_pack(value)], a=ms)

    def delete(self, key, raise_key_error=True):
        value = self.get(key, _MISSING)
        deleted = self._t.call('delete', fields=[self._k(key)])[1]
        if not deleted:
            if raise_key_error:
                raise KeyError(key)
            return None
        return None if value is _MISSING else value

    def expire(self, key, expiry):
        return self._t.call('expire', key=self._k(key), a=int(round(float(expiry) * 1000)))[0]

    def has_key(self, key):
        return self._t.call('exists', key=self._k(key))[0]

    def __contains__(self, key):
        return self.has_key(key)

    def __getitem__(self, key):
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        self.set(key, value)

    def __delitem__(self, key):
        self.delete(key)

    def keys(self):
        n = len(self._prefix)
        return [k[n:] for k in self._t.call('scan', key=self._prefix)[2]]

    def __len__(self):
        return len(self.keys())

    def values(self):
        return [v for _, v in self.items()]

    def items(self):
        out = []
        for k in self.keys():
            v = self.get(k, _MISSING)
            if v is not _MISSING:
                out.append((k, v))
        return out

    def clear(self):
        keys = [self._k(k) for k in self.keys()]
        return self._t.call('delete', fields=keys)[1] if keys else 0

    # Bulk variants: each selects keys, then gets, sets, deletes or expires them.
    def _select(self, pred):
        return [k for k in self.keys() if pred(k)]

    def _get_many(self, keys):
        out = {}
        for k in keys:
            v = self.get(k, _MISSING)
            if v is not _MISSING:
                out[k] = v
        return out

    def _set_many(self, keys, value, expiry):
        for k in keys:
            self.set(k, value, expiry)
        return keys

    def _delete_many(self, keys):
        if keys:
            self._t.call('delete', fields=[self._k(k) for k in keys])
        return keys

    def _expire_many(self, keys, expiry):
        for k in keys:
            self.expire(k, expiry)
        return keys


def _bulk(selector):
    def make(op):
        def method(self, arg, *rest, **kwargs):
            keys = self._select(selector(arg, rest))
            if op == 'get':
                return self._get_many(keys)
            if op == 'set':
                value = rest[0] if rest else kwargs.pop('value')
                return self._set_many(keys, value, kwargs.get('expiry', 0.0))
            if op == 'delete':
                return self._delete_many(keys)
            return self._expire_many(keys, rest[0] if rest else kwargs['expiry'])
        return method
    return make


_SELECTORS = {
    'by_prefix': lambda arg, rest: (lambda k: k.startswith(arg)),
    'by_suffix': lambda arg, rest: (lambda k: k.endswith(arg)),
    'by_regex': lambda arg, rest: (lambda k, r=re.compile(arg): r.search(k) is not None),
    'contains': lambda arg, rest: (lambda k: arg in k),
    'not_contains': lambda arg, rest: (lambda k: arg not in k),
    'contains_all': lambda arg, rest: (lambda k: all(p in k for p in (arg if isinstance(arg, (list, tuple)) else [arg]))),
    'contains_any': lambda arg, rest: (lambda k: any(p in k for p in (arg if isinstance(arg, (list, tuple)) else [arg]))),
}

for _suffix, _selector in _SELECTORS.items():
    for _op in ('get', 'set', 'delete', 'expire'):
        setattr(Cache, '{}_{}'.format(_op, _suffix), _bulk(_selector)(_op))
