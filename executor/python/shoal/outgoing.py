"""Outgoing connections through the cluster's connectors (``self.out`` / ``self.outgoing``).

Each object here is a thin client: the pools, credentials and protocol work live in
``shoal-connectors``; a call releases the GIL while it waits. Names follow Zato 3.2::

    self.out.rest['crm'].conn.get(self.cid, params={'id': 1})
    self.out.soap['legacy'].conn.post(self.cid, '<getCustomer><id>1</id></getCustomer>')
    self.out.amqp.send({'order': 1}, 'rabbit-out', routing_key='orders')
    self.out.zmq.send('hello', 'zmq-out')
    with closing(self.out.sql.get('crm-db').session()) as session:
        session.execute('insert into t (a) values (:a)', {'a': 1})
        session.commit()
    self.out.ftp.get('files').writetext('/in/a.txt', 'hello')
    self.out.ibm_mq.send('hello', 'mq-out', 'DEV.QUEUE.1')
"""

import datetime
import decimal
import io
import json
import uuid

from shoal import numbers
from shoal import trace as _trace
from shoal.errors import (  # noqa: F401 - re-exported: services import them from here
    ServiceError, OutgoingError, ConnectionNotConfigured, ConnectionUnavailable, ConnectionTimeout,
    AuthFailed, RemoteError, OutgoingBadRequest)


_ERRORS = {
    'not_configured': ConnectionNotConfigured, 'unavailable': ConnectionUnavailable,
    'timeout': ConnectionTimeout, 'unauthorized': AuthFailed, 'remote_error': RemoteError,
    'bad_request': OutgoingBadRequest,
}


def _default(o):
    if isinstance(o, (datetime.datetime, datetime.date, datetime.time)):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return str(o)
    if isinstance(o, uuid.UUID):
        return str(o)
    if isinstance(o, (bytes, bytearray)):
        return o.decode('utf-8', 'replace')
    raise TypeError('{} is not JSON serializable'.format(type(o).__name__))


def _encode(data):
    """Bytes to send: bytes as they are, text as UTF-8, anything else as JSON."""
    if data is None:
        return b'', None
    if isinstance(data, (bytes, bytearray)):
        return bytes(data), None
    if isinstance(data, str):
        return data.encode('utf-8'), None
    return numbers.dumps(data, default=_default), 'application/json'


class _Transport:
    """Calls ``_shoal_native.connector_call`` and turns failures into exceptions."""

    def __init__(self, native):
        self.native = native

    def call(self, kind, op, meta, body=b'', addr=None):
        """Operation ``op`` of connector kind ``kind`` with its fields (``meta``) and body;
        returns the reply's fields, its body and the connector that answered."""
        code, message, reply, data, used = self.native.connector_call(
            kind, op, numbers.dumps(meta, default=_default), body, addr, _trace.current() or None)
        if code:
            raise _ERRORS.get(code, OutgoingError)(message)
        return (numbers.loads(reply) if reply else None), data, used


# -- HTTP, REST, SOAP ---------------------------------------------------------------------

class Response:
    """What an outgoing HTTP call returns (a subset of ``requests.Response``, plus Zato's
    ``.data``: the body decoded as JSON when the server says it is JSON, else text)."""

    def __init__(self, status_code, headers, content):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def ok(self):
        return self.status_code < 400

    @property
    def text(self):
        return self.content.decode('utf-8', 'replace')

    def json(self):
        return numbers.loads(self.content)

    @property
    def data(self):
        ctype = self.headers.get('content-type', '')
        if 'json' in ctype:
            try:
                return self.json()
            except ValueError:
                return self.text
        return self.text

    def raise_for_status(self):
        if not self.ok:
            raise RemoteError('HTTP {}: {}'.format(self.status_code, self.text[:200]))

    def __repr__(self):
        return '<Response [{}]>'.format(self.status_code)


class HTTPConnection:
    """``self.out.rest[name]`` (also ``.plain_http``) and ``self.out.soap[name]``; Zato
    code reaches the methods through ``.conn``."""

    def __init__(self, transport, name, soap=False):
        self._t = transport
        self.name = name
        self._soap = soap

    @property
    def conn(self):
        return self

    def _call(self, method, cid, data=None, params=None, headers=None, timeout=None, **_ignored):
        body, ctype = _encode(data)
        hdrs = {str(k): str(v) for k, v in (headers or {}).items()}
        if ctype and not any(k.lower() == 'content-type' for k in hdrs):
            hdrs['Content-Type'] = ctype
        meta = {'connection': self.name, 'cid': cid or '', 'method': method,
                'params': {str(k): str(v) for k, v in (params or {}).items()},
                'headers': hdrs, 'timeout_ms': int(float(timeout) * 1000) if timeout else 0}
        reply, content, _ = self._t.call('http', 'request', meta, body)
        return Response(reply['status'], reply.get('headers') or {}, content)

    def get(self, cid, params=None, headers=None, **kwargs):
        return self._call('GET', cid, None, params, headers, **kwargs)

    def delete(self, cid, params=None, headers=None, **kwargs):
        return self._call('DELETE', cid, None, params, headers, **kwargs)

    def options(self, cid, params=None, headers=None, **kwargs):
        return self._call('OPTIONS', cid, None, params, headers, **kwargs)

    def post(self, cid, data='', params=None, headers=None, **kwargs):
        return self._call('POST', cid, data, params, headers, **kwargs)

    send = post

    def put(self, cid, data='', params=None, headers=None, **kwargs):
        return self._call('PUT', cid, data, params, headers, **kwargs)

    def patch(self, cid, data='', params=None, headers=None, **kwargs):
        return self._call('PATCH', cid, data, params, headers, **kwargs)

    def ping(self, cid=None):
        """A HEAD request; returns the status code (raises when the peer is unreachable)."""
        return self._call('POST' if self._soap else 'HEAD', cid).status_code


# -- messaging ---------------------------------------------------------------------------

class AMQPConnection:
    """``self.out.amqp['name']``; ``self.out.amqp.send(msg, name, ...)`` is the usual way."""

    def __init__(self, transport, name):
        self._t = transport
        self.name = name

    def send(self, msg, exchange='', routing_key='', properties=None, headers=None, cid=None,
             **kwargs):
        """Publishes ``msg`` and returns once the broker confirmed it. ``properties``
        (and keyword arguments of the same names) override the connection's defaults:
        delivery_mode, priority, content_type, expiration, app_id, correlation_id,
        reply_to, message_id, type, user_id, content_encoding."""
        body, ctype = _encode(msg)
        props = {}
        for k, v in list((properties or {}).items()) + list(kwargs.items()):
            if v is not None:
                props[str(k)] = str(v)
        if ctype and 'content_type' not in props:
            props['content_type'] = ctype
        meta = {'connection': self.name, 'cid': cid or '', 'exchange': exchange or '',
                'routing_key': routing_key or '', 'properties': props,
                'headers': {str(k): str(v) for k, v in (headers or {}).items()}}
        self._t.call('amqp', 'publish', meta, body)


class ZMQConnection:
    """``self.out.zmq['name']``: a PUSH or PUB socket."""

    def __init__(self, transport, name):
        self._t = transport
        self.name = name

    def send(self, msg, topic=None, cid=None, *args, **kwargs):
        """Sends ``msg`` (one frame; with ``topic``, the topic frame first, for SUB
        sockets that filter on it)."""
        body, _ = _encode(msg)
        meta = {'connection': self.name, 'cid': cid or '', 'frames': [topic] if topic else []}
        self._t.call('zmq', 'send', meta, body)


class IBMMQConnection:
    """``self.out.ibm_mq['name']`` (also ``.wmq``, ``.jms_wmq``)."""

    def __init__(self, transport, name):
        self._t = transport
        self.name = name

    def send(self, msg, queue_name, correlation_id=None, reply_to=None, priority=None,
             delivery_mode=None, **_ignored):
        """Puts ``msg`` on ``queue_name``; returns once the queue manager accepted it.
        ``delivery_mode`` 1 is non-persistent, 2 persistent."""
        body, _ = _encode(msg)
        meta = {'connection': self.name, 'queue': queue_name,
                'correlation_id': correlation_id or '', 'reply_to': reply_to or '',
                'priority': int(priority or 0), 'delivery_mode': int(delivery_mode or 0)}
        self._t.call('ibm_mq', 'send', meta, body)


class KafkaConnection:
    """``self.out.kafka['name']``: a producer to a Kafka cluster."""

    def __init__(self, transport, name):
        self._t = transport
        self.name = name

    def send(self, topic, value, key=None, headers=None, partition=None):
        """Sends one record to ``topic`` and returns its offset once the broker has
        acknowledged it (``acks`` of the connection, ``all`` by default); raises
        ``ConnectionTimeout`` when it has not within the connection's timeout.

        ``value``: bytes as they are, text as UTF-8, anything else as JSON; ``key``: text
        or bytes (UTF-8); ``headers``: a dict of text values; ``partition``: a partition
        number (default: by the key's hash, or spread)."""
        body, _ = _encode(value)
        if isinstance(key, (bytes, bytearray)):
            key = bytes(key).decode('utf-8')
        meta = {'connection': self.name, 'topic': topic}
        if key is not None:
            meta['key'] = str(key)
        if headers:
            meta['headers'] = {str(k): (v.decode('utf-8') if isinstance(v, (bytes, bytearray)) else str(v))
                               for k, v in dict(headers).items()}
        if partition is not None:
            meta['partition'] = int(partition)
        reply, _, _ = self._t.call('kafka', 'send', meta, body)
        self.last = reply or {}
        return self.last.get('offset')


# -- SQL ---------------------------------------------------------------------------------

class Row(tuple):
    """A result row: a tuple that also answers by column name (``row.name``,
    ``row['name']``) and converts with ``._asdict()``, as SQLAlchemy's rows do."""

    def __new__(cls, values, keys):
        row = super().__new__(cls, values)
        row._keys = keys
        return row

    def __getattr__(self, name):
        try:
            return tuple.__getitem__(self, self._keys.index(name))
        except ValueError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._keys.index(key))
            except ValueError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)

    def keys(self):
        return list(self._keys)

    def _asdict(self):
        return dict(zip(self._keys, self))

    @property
    def _mapping(self):
        return self._asdict()


class Result:
    """What ``session.execute`` returns: ``fetchall()``, ``fetchone()``, ``first()``,
    ``scalar()``, ``rowcount``, ``keys()``; iterable."""

    def __init__(self, columns, rows, rowcount):
        self._columns = columns
        self._rows = [Row(r, columns) for r in rows]
        self._pos = 0
        self.rowcount = rowcount

    def keys(self):
        return list(self._columns)

    def fetchall(self):
        rest = self._rows[self._pos:]
        self._pos = len(self._rows)
        return rest

    all = fetchall

    def fetchone(self):
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def fetchmany(self, size=1):
        rows = self._rows[self._pos:self._pos + size]
        self._pos += len(rows)
        return rows

    def first(self):
        return self._rows[0] if self._rows else None

    def scalar(self):
        row = self.first()
        return row[0] if row else None

    def mappings(self):
        return [r._asdict() for r in self._rows]

    def __iter__(self):
        return iter(self.fetchall())

    def __len__(self):
        return len(self._rows)


def _sql_text(sql):
    # SQLAlchemy's text() objects carry their SQL in .text.
    return getattr(sql, 'text', sql)


class SQLSession:
    """A unit of work held in a connector: the first statement begins a transaction,
    ``commit()`` or ``rollback()`` ends it (the next statement begins another), and
    ``close()`` rolls back what was not committed. Use with ``contextlib.closing`` or
    as a context manager."""

    def __init__(self, transport, name, idle_timeout=None):
        self._t = transport
        self.name = name
        self._idle_ms = int(float(idle_timeout) * 1000) if idle_timeout else 0
        self._session = None
        self._addr = None

    def _begin(self):
        if self._session is None:
            reply, _, addr = self._t.call('sql', 'begin', {'connection': self.name,
                                                           'idle_timeout_ms': self._idle_ms})
            self._session, self._addr = reply['session_id'], addr
        return self._session

    def execute(self, sql, params=None, **kwargs):
        """Runs one statement with ``:name`` bind parameters from ``params`` (a dict;
        keyword arguments also bind). Values are bound, never interpolated."""
        bind = dict(params or {})
        bind.update(kwargs)
        session = self._begin()
        meta = {'connection': self.name, 'session_id': session, 'sql': _sql_text(sql),
                'bind': bind}
        reply, rows, _ = self._t.call('sql', 'execute', meta, b'', self._addr)
        return Result(reply.get('columns') or [], numbers.loads(rows) if rows else [],
                      reply.get('rows_affected', 0))

    def _end(self, commit):
        if self._session is None:
            return
        session, addr = self._session, self._addr
        self._session = self._addr = None
        self._t.call('sql', 'end', {'session_id': session, 'commit': commit}, b'', addr)

    def commit(self):
        self._end(True)

    def rollback(self):
        self._end(False)

    def close(self):
        self._end(False)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        return False


class SQLConnection:
    """``self.out.sql.get(name)``: ``.session()`` for a unit of work, or ``.execute()``
    for one statement in its own transaction."""

    def __init__(self, transport, name):
        self._t = transport
        self.name = name

    def session(self, idle_timeout=None):
        return SQLSession(self._t, self.name, idle_timeout)

    def execute(self, sql, params=None, **kwargs):
        bind = dict(params or {})
        bind.update(kwargs)
        meta = {'connection': self.name, 'session_id': '', 'sql': _sql_text(sql), 'bind': bind}
        reply, rows, _ = self._t.call('sql', 'execute', meta)
        return Result(reply.get('columns') or [], numbers.loads(rows) if rows else [],
                      reply.get('rows_affected', 0))

    def ping(self):
        return self.execute('select 1').scalar() == 1


# -- FTP ---------------------------------------------------------------------------------

class FTPConnection:
    """``self.out.ftp.get(name)``: pyfilesystem2's names, as Zato's FTP connections."""

    def __init__(self, transport, name):
        self._t = transport
        self.name = name

    def _op(self, op, path='', path2='', data=b''):
        return self._t.call('ftp', op, {'connection': self.name, 'path': path, 'path2': path2},
                            data)

    def listdir(self, path='/'):
        return self._op('listdir', path)[0]['names']

    def _check(self, result):
        code, message, size = result
        if code:
            raise _ERRORS.get(code, OutgoingError)(message)
        return size

    def download(self, path, file, chunk_size=None, **_ignored):
        """Streams ``path`` into the binary ``file`` (anything with ``write``) piece by
        piece: neither the connector nor this process holds the file whole. Returns the
        number of bytes."""
        return self._check(self._t.native.ftp_download(self.name, path, file.write))

    def upload(self, path, file, chunk_size=1024 * 1024, **_ignored):
        """Streams the binary ``file`` (anything with ``read``) to ``path``, ``chunk_size``
        bytes at a time. Returns the number of bytes."""
        return self._check(self._t.native.ftp_upload(self.name, path,
                                                     lambda: file.read(chunk_size) or b''))

    def readbytes(self, path):
        buf = io.BytesIO()
        self.download(path, buf)
        return buf.getvalue()

    def writebytes(self, path, contents):
        self.upload(path, io.BytesIO(bytes(contents)))

    def readtext(self, path, encoding='utf-8', errors='strict', newline=''):
        return self.readbytes(path).decode(encoding, errors)

    def writetext(self, path, contents, encoding='utf-8', errors='strict', newline=''):
        self.writebytes(path, contents.encode(encoding, errors))

    # pyfilesystem2 also has these older names.
    getbytes, setbytes, gettext, settext = readbytes, writebytes, readtext, writetext

    def remove(self, path):
        self._op('remove', path)

    def makedir(self, path, **_ignored):
        self._op('makedir', path)

    def removedir(self, path):
        self._op('removedir', path)

    def rename(self, src, dst):
        self._op('rename', src, dst)

    move = rename

    def exists(self, path):
        return self._op('exists', path)[0]['flag']

    def isdir(self, path):
        return self._op('isdir', path)[0]['flag']

    def isfile(self, path):
        return self._op('isfile', path)[0]['flag']

    def getsize(self, path):
        return self._op('getsize', path)[0]['size']


_KINDS = {
    'rest': lambda t, n: HTTPConnection(t, n),
    'soap': lambda t, n: HTTPConnection(t, n, soap=True),
    'amqp': AMQPConnection,
    'zmq': ZMQConnection,
    'sql': SQLConnection,
    'ftp': FTPConnection,
    'ibm_mq': IBMMQConnection,
    'kafka': KafkaConnection,
}


def connection(native, kind, name):
    """A client for connection ``name`` of ``kind`` (canonical kind names), or None when
    the kind is not served by the connectors."""
    make = _KINDS.get(kind)
    return make(_Transport(native), name) if make else None
