"""The service programming model (Zato 3.2 names)."""

import json
import logging
import re
import uuid

from shoal import trace as _trace

from shoal import context
from shoal.errors import (  # noqa: F401 - re-exported: services import them from here
    ServiceError, BadRequest, NotFound, Forbidden, MethodNotAllowed)


class Bunch(dict):
    """A dict whose keys are also attributes (Zato's ``request.input``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


_camel_1 = re.compile(r'(.)([A-Z][a-z]+)')
_camel_2 = re.compile(r'([a-z0-9])([A-Z])')


def uncamelify(s):
    """``MyCamelService`` -> ``my-camel-service``."""
    s = _camel_1.sub(r'\1-\2', s)
    return _camel_2.sub(r'\1-\2', s).lower()


def service_name(cls):
    """A service's name: its ``name`` attribute, else module path + un-camel-cased class
    name, underscores turned into dashes (``bar_svc.MyCamelService`` ->
    ``bar-svc.my-camel-service``), as Zato names them."""
    explicit = cls.__dict__.get('name')
    if isinstance(explicit, str) and explicit:
        return explicit
    return '{}.{}'.format(cls.__module__, uncamelify(cls.__name__)).replace('_', '-')


class Payload(Bunch):
    """``self.response.payload`` of a service with SimpleIO output: set attributes
    (``payload.name = 'x'``), assign a dict, or assign rows (``payload[:] = rows``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        dict.__setattr__(self, '_rows', None)

    def __setitem__(self, key, value):
        if isinstance(key, slice):
            dict.__setattr__(self, '_rows', list(value))
        else:
            super().__setitem__(key, value)

    def __setattr__(self, name, value):
        if name == '_rows':
            dict.__setattr__(self, name, value)
        else:
            self[name] = value

    def value(self):
        rows = dict.__getattribute__(self, '_rows')
        return rows if rows is not None else dict(self)


class HTTPRequestData:
    """``self.request.http``: method, GET (query), POST (form), path, params (URL path
    parameters) and headers (lower-cased names)."""

    def __init__(self, http=None):
        http = http or {}
        self.method = http.get('method', '')
        self.path = http.get('path', '')
        self.params = Bunch(http.get('params') or {})
        self.GET = Bunch(http.get('query') or {})
        self.POST = Bunch(http.get('form') or {})
        self.headers = Bunch(http.get('headers') or {})


class Request:
    """``self.request``: ``payload`` (the parsed body), ``input`` (payload merged with
    path and query parameters, attribute access), ``raw_request`` and ``http``."""

    __slots__ = ('payload', '_raw', '_http', '_http_data', 'input', '_channel')

    def __init__(self, payload=None, raw_request=b'', http=None, channel=None):
        self.payload = payload
        # A large body comes as the executor's own buffer (an object with ``tobytes()``)
        # and becomes ``bytes`` only if the service reads ``raw_request``: a service
        # that reads only the payload never pays for a copy of the body.
        self._raw = raw_request
        self._http = http
        self._http_data = None
        self._channel = channel
        data = Bunch(payload) if isinstance(payload, dict) else Bunch()
        if http:
            query = http.get('query')
            if query:
                data.update(query)
            params = http.get('params')
            if params:
                data.update(params)
        self.input = data

    @property
    def raw_request(self):
        """The request body exactly as received (``bytes``; ``str`` where a caller gave
        text)."""
        raw = self._raw
        if raw is not None and raw.__class__ is not bytes and raw.__class__ is not str \
                and hasattr(raw, 'tobytes'):
            raw = self._raw = raw.tobytes()
        return raw

    @raw_request.setter
    def raw_request(self, value):
        self._raw = value

    @property
    def http(self):
        if self._http_data is None:
            self._http_data = HTTPRequestData(self._http)
        return self._http_data

    def _queue_meta(self, kind):
        channel = self._channel or {}
        if channel.get('type') != kind:
            return None
        meta = dict(channel.get('meta') or {})
        headers = meta.pop('headers', None)
        data = Bunch(meta)
        try:
            data['headers'] = json.loads(headers) if headers else {}
        except ValueError:
            data['headers'] = {}
        return data

    @property
    def amqp(self):
        """For calls from an AMQP channel: the message's properties (``queue``,
        ``exchange``, ``routing_key``, ``message_id``, ``correlation_id``, ``reply_to``,
        ``content_type``, ``app_id``, ``redelivered``, ``attempt``, ``headers``...)."""
        return self._queue_meta('amqp')

    @property
    def zmq(self):
        """For calls from a ZeroMQ channel: ``socket_type``, ``address``, ``topic``."""
        return self._queue_meta('zmq')

    @property
    def ibm_mq(self):
        """For calls from an IBM MQ channel: ``queue``, ``message_id``,
        ``correlation_id``, ``reply_to``, ``priority``, ``attempt``."""
        return self._queue_meta('ibm_mq')

    wmq = ibm_mq

    @property
    def kafka(self):
        """For calls from a Kafka channel: ``topic``, ``partition``, ``offset``, ``key``,
        ``timestamp`` (ms), ``attempt`` and ``headers`` (a dict); the numbers as ints."""
        data = self._queue_meta('kafka')
        if data is not None:
            for k in ('partition', 'offset', 'timestamp', 'attempt'):
                if k in data:
                    try:
                        data[k] = int(data[k])
                    except (TypeError, ValueError):
                        pass
        return data

    @property
    def auth(self):
        """Who called, as the channel's security definition verified it: a ``Bunch`` of
        ``type`` (``basic_auth``, ``apikey``, ``wss``, ``jwt``, ``bearer``,
        ``client_cert``), ``security`` (the definition's name), ``username`` (the user,
        a JWT's ``sub``, a certificate's common name), and ``claims`` (a JWT's verified
        claims) or ``certificate`` (``subject``, ``common_name``, ``sans``, ``serial``,
        ``issuer``). ``None`` when the channel has no security."""
        channel = self._channel or {}
        raw = channel.get('auth')
        if raw:
            try:
                return Bunch(json.loads(raw))
            except ValueError:
                return None
        if channel.get('security_name'):
            return Bunch(type='', security=channel.get('security_name', ''),
                         username=channel.get('username', ''))
        return None

    @property
    def text(self):
        raw = self.raw_request
        return raw.decode('utf-8', 'replace') if isinstance(raw, (bytes, bytearray)) else raw


class Response:
    """``self.response``: ``payload`` (dict, list, str or bytes), ``status_code`` (200),
    ``headers`` and ``content_type``."""

    __slots__ = ('payload', 'status_code', 'status_message', 'headers', 'content_type', 'content_encoding')

    def __init__(self):
        self.payload = None
        self.status_code = 200
        self.headers = {}
        self.content_type = None
        self.content_encoding = None
        self.status_message = ''


class ChannelInfo:
    """``self.channel``: how the call reached Shoal."""

    def __init__(self, info=None):
        info = info or {}
        self.name = info.get('name', '')
        self.type = info.get('type', '')
        self.data_format = info.get('data_format', '')
        self.security = Bunch(name=info.get('security_name', ''),
                              username=info.get('username', ''))
        self.is_internal = self.type == 'invoke'
        # Per channel type: for scheduler runs 'job', 'run', 'scheduled', 'manual'.
        self.meta = dict(info.get('meta') or {})

    def __repr__(self):
        return '<ChannelInfo name={!r} type={!r}>'.format(self.name, self.type)


class Service:
    """Base class of every service. Subclass it and implement ``handle()``."""

    name = None
    _runtime = None
    _channel_info = None
    _logger = None

    def __init__(self):
        # Kept cheap: the runtime sets request, channel and cid for every call.
        self.request = None
        self.response = Response()
        self.cid = ''
        self.environ = {}

    @property
    def logger(self):
        """A logger named after the service's module."""
        if self._logger is None:
            self._logger = logging.getLogger(type(self).__module__)
        return self._logger

    @logger.setter
    def logger(self, value):
        self._logger = value

    @property
    def trace_id(self):
        """The id of the trace this call belongs to (32 hex digits; '' when none): what a
        trace UI (Jaeger, Tempo) finds the call by."""
        return _trace.trace_id()

    def span(self, name, **attributes):
        """A span of the service's own around a block of work, in the call's trace::

            with self.span('price.compute', items=len(items)) as s:
                s.set('discounted', True)

        Calls made inside the block are its children. Costs nothing when tracing is off."""
        return _trace.span(name, **attributes)

    @property
    def channel(self):
        """How the call reached Shoal (``.name``, ``.type``, ``.security.username``)."""
        info = self._channel_info
        if not isinstance(info, ChannelInfo):
            info = ChannelInfo(info)
            self._channel_info = info
        return info

    @channel.setter
    def channel(self, value):
        self._channel_info = value

    chan = channel

    @classmethod
    def get_name(cls):
        return service_name(cls)

    @property
    def impl_name(self):
        return '{}.{}'.format(type(self).__module__, type(self).__name__)

    # Hooks, overridden by subclasses as needed.
    def accept(self):
        return True

    def before_handle(self):
        pass

    def handle(self):
        pass

    def after_handle(self):
        pass

    # -- what the runtime provides ------------------------------------------------------
    def _rt(self):
        if self._runtime is None:
            raise ServiceError('this service is not running inside a Shoal runtime')
        return self._runtime

    @property
    def out(self):
        """Outgoing connections: ``self.out.rest['name']``, ``self.out.amqp.send(...)``."""
        rt = self._rt()
        return context.Outgoing(rt.outgoing, rt.native)

    outgoing = out

    @property
    def cache(self):
        """Zato 3.2's cache API: ``self.cache.default.get(key)``."""
        return context.Caches(self._rt().caches, self._rt().kv)

    @property
    def kvdb(self):
        """Zato 2.0's KVDB: ``self.kvdb.conn.get(key)``."""
        return context.KVDB(self._rt().kvdb_conn, self._rt().kv)

    @property
    def config(self):
        """Zato's user config: ``self.config.<file>.<section>.<key>`` for every INI file of
        the executor's user config folders (``self.config.user.<file>...`` works too, as
        does the alias ``self.user_config``). Values are strings."""
        rt = self._runtime
        return rt.user_config() if rt is not None else Bunch()

    user_config = config

    @property
    def time(self):
        return context.TimeUtil()

    @property
    def patterns(self):
        return context.Patterns(self)

    def lock(self, name='', ttl=20, block=10):
        """A lock shared by the whole cluster (``with self.lock('x'):``); it expires after
        ``ttl`` seconds even if its holder dies; waits up to ``block`` seconds."""
        return self._rt().locks.lock(name or self.name, ttl, block)

    def invoke(self, name, payload=None, **kwargs):
        """Invokes another service synchronously and returns its response payload. With no
        payload, keyword arguments become the payload. Services held by this executor run
        in-process; others are invoked on an executor that holds them."""
        if payload is None or payload == '':
            payload = dict(kwargs) if kwargs else None
        target = name if isinstance(name, str) else service_name(name)
        if target == self.name:
            raise ServiceError('a service cannot invoke itself: {}'.format(target))
        return self._rt().invoke_from(self, target, payload)

    def invoke_async(self, name, payload=None, callback=None, cid='', **_kwargs):
        """Invokes a service in the background and returns its cid at once. ``callback``
        (a service name or a list of names) is invoked with the response."""
        target = name if isinstance(name, str) else service_name(name)
        return self._rt().invoke_async(self, target, payload, callback, cid or new_cid())


def new_cid():
    return uuid.uuid4().hex[:24]
