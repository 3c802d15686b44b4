"""What a service reaches besides its request: outgoing connections (``self.out``), the
cache and KVDB, time helpers, locks, asynchronous invocation and the patterns."""

import concurrent.futures
import contextlib
import datetime
import threading
import time as _time

from shoal.errors import ConnectionNotConfigured, ServiceError
from shoal import trace as _trace

# Zato's names for outgoing connection types, and their aliases.
OUTGOING_KINDS = {
    'rest': 'HTTP', 'plain_http': 'HTTP', 'soap': 'SOAP', 'sql': 'SQL', 'amqp': 'AMQP',
    'zmq': 'ZeroMQ', 'ftp': 'FTP', 'ibm_mq': 'IBM MQ', 'wmq': 'IBM MQ', 'jms_wmq': 'IBM MQ',
    'redis': 'Redis', 'kafka': 'Kafka',
}
_CANONICAL = {'plain_http': 'rest', 'wmq': 'ibm_mq', 'jms_wmq': 'ibm_mq'}


def not_configured(kind, name):
    return ConnectionNotConfigured("outgoing {} connection '{}' is not configured".format(
        OUTGOING_KINDS.get(kind, kind), name))


class ConnectionMap:
    """``self.out.rest`` and friends: ``['name']`` / ``.get('name')`` give a connection;
    ``.send(msg, name, ...)`` (AMQP, ZeroMQ, IBM MQ) sends through one. A connection
    stubbed with ``shoal.testing`` wins; otherwise, inside an executor, the cluster's
    connectors serve it (and say when it is not configured)."""

    def __init__(self, kind, registry, native=None):
        self.kind = _CANONICAL.get(kind, kind)
        self._registry = registry
        self._native = native

    def __getitem__(self, name):
        conn = self._registry.get(self.kind, {}).get(name)
        if conn is None and self._native is not None:
            from shoal.outgoing import connection
            conn = connection(self._native, self.kind, name)
        if conn is None:
            raise not_configured(self.kind, name)
        return conn

    def get(self, name):
        return self[name]

    def __contains__(self, name):
        return name in self._registry.get(self.kind, {})

    def keys(self):
        return list(self._registry.get(self.kind, {}))

    def send(self, msg, name, *args, **kwargs):
        return self[name].send(msg, *args, **kwargs)

    def invoke(self, msg, name, *args, **kwargs):
        return self[name].invoke(msg, *args, **kwargs)


class Outgoing:
    """``self.out`` / ``self.outgoing``."""

    def __init__(self, registry, native=None):
        self._registry = registry
        self._native = native

    def __getattr__(self, kind):
        if kind.startswith('_') or kind not in OUTGOING_KINDS:
            raise AttributeError("self.out has no connection type '{}'; types: {}".format(
                kind, ', '.join(sorted(OUTGOING_KINDS))))
        return ConnectionMap(kind, self._registry, self._native)


class _Unwired:
    """Stands for the cache or the KVDB until one is configured; any use raises a clear
    error instead of failing somewhere deep."""

    def __init__(self, what):
        self._what = what

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ServiceError('{} is not configured for this executor'.format(self._what), 'service_error')

    def __getitem__(self, key):
        raise ServiceError('{} is not configured for this executor'.format(self._what), 'service_error')

    def __contains__(self, key):
        raise ServiceError('{} is not configured for this executor'.format(self._what), 'service_error')


class Caches:
    """``self.cache``: ``.default`` and named caches (``self.cache['name']``,
    ``get_cache('builtin', name)``), over the cluster's KVDB. A cache stubbed with
    ``shoal.testing`` wins over the KVDB."""

    def __init__(self, registry, transport=None):
        self._registry = registry
        self._transport = transport

    def _cache(self, name):
        stub = self._registry.get(name)
        if stub is not None:
            return stub
        if self._transport is None:
            return _Unwired("the cache '{}'".format(name))
        from shoal.kvdb import Cache
        return Cache(self._transport, name)

    @property
    def default(self):
        return self._cache('default')

    def __getitem__(self, name):
        return self._cache(name)

    def get_cache(self, _type, name):
        return self._cache(name)


class KVDB:
    """``self.kvdb``: ``.conn`` behaves like a redis-py client (Zato 2.0's
    ``self.kvdb.conn.get(...)``), over the cluster's KVDB."""

    def __init__(self, conn, transport=None):
        if conn is None and transport is not None:
            from shoal.kvdb import KVDBConnection
            conn = KVDBConnection(transport)
        self.conn = conn if conn is not None else _Unwired('the KVDB')


class TimeUtil:
    """``self.time``: UTC helpers, as Zato's."""

    @staticmethod
    def utcnow(as_string=True):
        now = datetime.datetime.now(datetime.timezone.utc)
        return now.isoformat() if as_string else now

    @staticmethod
    def today(as_string=True):
        d = datetime.datetime.now(datetime.timezone.utc).date()
        return d.isoformat() if as_string else d

    @staticmethod
    def reformat(value, from_, to):
        return datetime.datetime.strptime(value, from_).strftime(to)


class LocalLocks:
    """Locks within one process, for runs without a cluster (tests)."""

    def __init__(self):
        self._locks = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def lock(self, name, ttl, block):
        with self._guard:
            lk = self._locks.setdefault(name, threading.Lock())
        if not lk.acquire(timeout=block if block else -1):
            raise ServiceError("could not acquire lock '{}' within {} s".format(name, block), 'timeout')
        try:
            yield
        finally:
            lk.release()


class ClusterLocks:
    """Locks across the cluster, held on a config store lease (they expire after ``ttl``
    seconds even if the holder dies)."""

    def __init__(self, native):
        self._native = native

    @contextlib.contextmanager
    def lock(self, name, ttl, block):
        lease = self._native.lock_acquire(name, int(ttl), float(block))
        if not lease:
            raise ServiceError("could not acquire lock '{}' within {} s".format(name, block), 'timeout')
        try:
            yield
        finally:
            self._native.lock_release(lease)


class Patterns:
    """``self.patterns``: ``fanout``, ``parallel`` and ``invoke_retry``, as Zato's."""

    def __init__(self, service):
        self.fanout = _FanOut(service)
        self.parallel = _Parallel(service)
        self.invoke_retry = _InvokeRetry(service)


def _callbacks(spec):
    if not spec:
        return []
    if isinstance(spec, (list, tuple)):
        return list(spec)
    return [spec]


class _Parallel:
    phase = 'on-target'

    def __init__(self, service):
        self.service = service

    def _run(self, targets, on_final, on_target, cid):
        svc = self.service
        runtime = svc._runtime
        cid = cid or svc.cid
        source = svc.name

        # The trace goes on in the background threads, from the span that asked.
        tp = _trace.current()

        def one(target, payload):
            with _trace.Call(cid, tp):
                return one_traced(target, payload)

        def one_traced(target, payload):
            req_ts = TimeUtil.utcnow()
            try:
                response, ok, exc = svc.invoke(target, payload), True, ''
            except Exception as e:
                response, ok, exc = None, False, '{}: {}'.format(type(e).__name__, e)
            result = {'source': source, 'target': target, 'response': response, 'ok': ok,
                      'exception': exc, 'cid': cid, 'req_ts_utc': req_ts,
                      'resp_ts_utc': TimeUtil.utcnow(), 'phase': 'on-target'}
            for cb in _callbacks(on_target):
                runtime.invoke_callback(svc, cb, result)
            return result

        def all_targets():
            futures = [runtime.background.submit(one, t, p) for t, p in targets.items()]
            data = [f.result() for f in futures]
            with _trace.Call(cid, tp):
                for cb in _callbacks(on_final):
                    runtime.invoke_callback(svc, cb, {'phase': 'on-final', 'data': data, 'cid': cid})

        runtime.background.submit(all_targets)
        return cid

    def invoke(self, targets, on_target=None, cid=None):
        """Invokes every ``{name: payload}`` target at once; ``on_target`` services get
        each result. Returns the cid at once."""
        return self._run(targets, None, on_target, cid)


class _FanOut(_Parallel):
    def invoke(self, targets, on_final, on_target=None, cid=None):
        """As ``parallel.invoke``, plus ``on_final`` services get
        ``{'phase': 'on-final', 'data': [results]}`` when every target has answered."""
        return self._run(targets, on_final, on_target, cid)


class _InvokeRetry:
    def __init__(self, service):
        self.service = service

    def invoke(self, target, payload=None, repeats=3, seconds=0, minutes=0, **_kwargs):
        """Invokes ``target``, retrying up to ``repeats`` times with a pause of
        ``seconds`` (or ``minutes``) between tries; raises the last error."""
        pause = float(seconds) + 60.0 * float(minutes)
        last = None
        for attempt in range(max(1, int(repeats))):
            try:
                return self.service.invoke(target, payload)
            except Exception as e:  # noqa: PERF203
                last = e
                self.service.logger.warning('invoke_retry: %s failed (attempt %d of %d): %s',
                                            target, attempt + 1, repeats, e)
                if attempt + 1 < repeats and pause > 0:
                    _time.sleep(pause)
        raise last


def background_pool():
    return concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix='shoal-async')
