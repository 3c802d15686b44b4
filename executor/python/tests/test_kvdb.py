"""self.kvdb.conn (redis-py-like) and self.cache (Zato 3.2's cache API) over the in-process
transport that shoal.testing uses; the Rust end-to-end suite runs the same calls through a
KVDB proxy over Redis."""

import time

import pytest

from shoal.kvdb import Cache, ConnectionError, DataError, KVDBConnection, MemoryTransport, ResponseError
from shoal.testing import ServiceHarness


@pytest.fixture
def conn():
    return KVDBConnection(MemoryTransport())


def test_strings_counters_and_expiry(conn):
    assert conn.get('nope') is None
    assert conn.set('a', 'x') is True
    assert conn.get('a') == 'x'
    assert conn.set('a', 'y', nx=True) is None
    assert conn.setnx('b', 1) is True
    assert conn.get('b') == '1'
    assert conn.incr('n') == 1
    assert conn.incrby('n', 5) == 6
    assert conn.decr('n', 2) == 4
    with pytest.raises(ResponseError):
        conn.incr('a')
    assert conn.ttl('a') == -1
    assert conn.ttl('missing') == -2
    conn.setex('short', 0.05, 'v')
    assert 0 < conn.pttl('short') <= 50
    time.sleep(0.08)
    assert conn.get('short') is None
    assert conn.exists('a', 'b', 'zz') == 2
    assert conn.expire('a', 10) is True
    assert 9 <= conn.ttl('a') <= 10
    assert sorted(conn.keys('*')) == ['a', 'b', 'n']
    assert conn.keys('a*') == ['a']
    with pytest.raises(DataError):
        conn.keys('a?c')
    assert conn.delete('a', 'zz') == 1
    with pytest.raises(DataError):
        conn.set('k', None)
    assert conn.get(b'b') == '1'
    conn.set('bin', b'\xff\x00')
    assert conn.get('bin') == b'\xff\x00'


def test_collections(conn):
    assert conn.hset('h', 'a', 1) == 1
    assert conn.hset('h', mapping={'b': 'two', 'a': 'one'}) == 1
    assert conn.hget('h', 'a') == 'one'
    assert conn.hgetall('h') == {'a': 'one', 'b': 'two'}
    assert conn.hexists('h', 'b') and not conn.hexists('h', 'c')
    assert conn.hlen('h') == 2
    assert conn.hdel('h', 'a', 'zz') == 1
    assert conn.rpush('l', 'x', 'y') == 2
    assert conn.lpush('l', 'w') == 3
    assert conn.lrange('l', 0, -1) == ['w', 'x', 'y']
    assert conn.rpop('l') == 'y'
    assert conn.llen('l') == 2
    assert conn.sadd('s', 'a', 'b', 'a') == 2
    assert conn.smembers('s') == {'a', 'b'}
    assert conn.sismember('s', 'a')
    assert conn.scard('s') == 2
    with pytest.raises(ResponseError) as e:
        conn.sadd('h', 'x')
    assert 'WRONGTYPE' in e.value.message


def test_cache_api():
    t = MemoryTransport()
    cache = Cache(t, 'default')
    assert cache.get('k') is None
    assert cache.get('k', 'dflt') == 'dflt'
    cache.set('k', {'a': [1, 2]})
    assert cache.get('k') == {'a': [1, 2]}
    assert 'k' in cache and cache.has_key('k')
    assert cache['k'] == {'a': [1, 2]}
    cache['b'] = b'\x00raw'
    assert cache['b'] == b'\x00raw'
    with pytest.raises(DataError):
        cache.set('bad', object())
    cache.set('gone', 1, expiry=0.03)
    assert cache.get('gone', details=True).expiry > 0
    time.sleep(0.06)
    assert 'gone' not in cache
    assert cache.delete('k') == {'a': [1, 2]}
    with pytest.raises(KeyError):
        cache.delete('k')
    assert cache.delete('k', raise_key_error=False) is None
    with pytest.raises(KeyError):
        cache['k']
    for k in ('user:1', 'user:2', 'order:1'):
        cache.set(k, k.upper())
    assert cache.get_by_prefix('user:') == {'user:1': 'USER:1', 'user:2': 'USER:2'}
    assert cache.get_by_suffix(':1') == {'user:1': 'USER:1', 'order:1': 'ORDER:1'}
    assert cache.get_by_regex(r'^ord') == {'order:1': 'ORDER:1'}
    assert sorted(cache.set_by_prefix('user:', 'x')) == ['user:1', 'user:2']
    assert cache['user:2'] == 'x'
    assert sorted(cache.delete_by_prefix('user:')) == ['user:1', 'user:2']
    assert sorted(cache.keys()) == ['b', 'order:1']
    # Named caches do not see each other's keys.
    other = Cache(t, 'other')
    other.set('b', 'theirs')
    assert cache['b'] == b'\x00raw' and other['b'] == 'theirs'
    assert len(other) == 1
    assert cache.clear() == 2
    assert len(cache) == 0


SOURCE = '''
from zato.server.service import Service

class Visits(Service):
    name = 'web.visits'

    def handle(self):
        page = self.request.payload['page']
        n = self.kvdb.conn.incr('visits:' + page)
        last = self.cache.default.get('last-page')
        self.cache.default.set('last-page', page, expiry=60)
        self.cache.get_cache('builtin', 'pages')[page] = n
        self.response.payload = {'visits': n, 'previous': last}
'''


def test_services_use_the_cache_and_kvdb_under_the_harness():
    h = ServiceHarness(SOURCE)
    assert h.invoke('web.visits', {'page': 'home'}).payload == {'visits': 1, 'previous': None}
    assert h.invoke('web.visits', {'page': 'home'}).payload == {'visits': 2, 'previous': 'home'}


class Down:
    def call(self, *args, **kwargs):
        raise ConnectionError('Redis at redis://127.0.0.1:6379 is unreachable')


def test_an_unreachable_kvdb_is_a_503_not_a_traceback():
    h = ServiceHarness(SOURCE)
    h.runtime.kv = Down()
    resp = h.invoke('web.visits', {'page': 'home'})
    assert resp.status_code == 503
    assert 'unreachable' in resp.error.message
