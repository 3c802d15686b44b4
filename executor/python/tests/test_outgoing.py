"""The Python side of outgoing connections (shoal.outgoing), over a recorded transport:
what each client sends to the connectors and how replies and errors come back. The
connectors themselves are tested end to end against real servers (tests/tests/connectors.rs)."""

import datetime
import decimal
import json
from contextlib import closing

import pytest

from shoal import Service
from shoal import outgoing as out
from shoal.context import Outgoing


class FakeNative:
    """Stands in for _shoal_native.connector_call: records calls, answers from a script."""

    def __init__(self, replies=None):
        self.calls = []
        self.replies = list(replies or [])

    def connector_call(self, kind, op, meta, body, addr=None, trace=None):
        self.calls.append(((kind, op), json.loads(meta), body, addr))
        if self.replies:
            return self.replies.pop(0)
        return None, None, b'null', b'', 'conn-1:1'


def ok(reply=None, body=b'', addr='conn-1:1'):
    return None, None, json.dumps(reply).encode(), body, addr


def test_rest_calls_and_responses():
    native = FakeNative([ok({'status': 200, 'headers': {'content-type': 'application/json'}},
                            b'{"a": 1}')])
    conn = Outgoing({}, native).rest['crm'].conn
    resp = conn.post('cid-1', {'when': datetime.date(2024, 1, 2), 'amount': decimal.Decimal('1.50')},
                     params={'id': 5}, headers={'X-Trace': 't'})
    rpc, meta, body, _ = native.calls[0]
    assert rpc == ('http', 'request')
    assert meta['method'] == 'POST' and meta['params'] == {'id': '5'}
    assert meta['headers'] == {'X-Trace': 't', 'Content-Type': 'application/json'}
    assert json.loads(body) == {'when': '2024-01-02', 'amount': '1.50'}
    assert resp.status_code == 200 and resp.ok and resp.data == {'a': 1}
    # plain_http is the same connection type; text bodies are sent as they are
    native.replies.append(ok({'status': 404, 'headers': {'content-type': 'text/plain'}}, b'gone'))
    resp = Outgoing({}, native).plain_http['crm'].conn.put('cid-2', 'raw text')
    assert native.calls[1][2] == b'raw text' and 'Content-Type' not in native.calls[1][1]['headers']
    assert resp.data == 'gone' and not resp.ok
    with pytest.raises(out.RemoteError):
        resp.raise_for_status()


def test_errors_map_to_exceptions_and_statuses():
    for code, cls, status_code in [('unavailable', out.ConnectionUnavailable, 'unavailable'),
                                   ('timeout', out.ConnectionTimeout, 'timeout'),
                                   ('not_configured', out.ConnectionNotConfigured, 'service_error'),
                                   ('remote_error', out.RemoteError, 'service_error'),
                                   ('unauthorized', out.AuthFailed, 'service_error'),
                                   ('bad_request', out.OutgoingBadRequest, 'service_error')]:
        native = FakeNative([(code, 'it failed', b'', b'', '')])
        with pytest.raises(cls) as e:
            Outgoing({}, native).amqp.send('x', 'rabbit')
        assert e.value.message == 'it failed'
        assert e.value.code == status_code
        assert e.value.connector_code == code


def test_amqp_zmq_and_ibm_mq_sends():
    native = FakeNative()
    o = Outgoing({}, native)
    o.amqp.send({'k': 1}, 'rabbit', routing_key='q', properties={'priority': 3},
                headers={'h': 1}, correlation_id='c')
    rpc, meta, body, _ = native.calls[-1]
    assert rpc == ('amqp', 'publish') and meta['routing_key'] == 'q'
    assert meta['properties'] == {'priority': '3', 'correlation_id': 'c',
                                  'content_type': 'application/json'}
    assert meta['headers'] == {'h': '1'} and json.loads(body) == {'k': 1}
    o.zmq.send('hi', 'z', topic='news')
    assert native.calls[-1][:3] == (('zmq', 'send'), {'connection': 'z', 'cid': '', 'frames': ['news']}, b'hi')
    o.wmq.send(b'\x00raw', 'mq', 'DEV.QUEUE.1', correlation_id='c1', priority=2, delivery_mode=1)
    rpc, meta, body, _ = native.calls[-1]
    assert rpc == ('ibm_mq', 'send') and body == b'\x00raw'
    assert (meta['queue'], meta['correlation_id'], meta['priority'], meta['delivery_mode']) == \
        ('DEV.QUEUE.1', 'c1', 2, 1)


def test_sql_sessions_stay_on_one_connector_and_roll_back_on_close():
    native = FakeNative([
        ok({'session_id': 'db/1'}, addr='conn-2:1'),
        ok({'columns': ['id', 'name'], 'rows_affected': 2}, b'[[1, "a"], [2, null]]', 'conn-2:1'),
        ok(None, addr='conn-2:1'),
    ])
    db = Outgoing({}, native).sql.get('db')
    with closing(db.session()) as session:
        result = session.execute('select id, name from t where id > :min', {'min': 0})
    begin, execute, end = native.calls
    assert begin[0] == ('sql', 'begin') and begin[3] is None
    assert execute[0] == ('sql', 'execute') and execute[3] == 'conn-2:1'
    assert execute[1]['session_id'] == 'db/1' and execute[1]['bind'] == {'min': 0}
    assert end[0] == ('sql', 'end') and end[1] == {'session_id': 'db/1', 'commit': False}
    assert end[3] == 'conn-2:1'
    rows = result.fetchall()
    assert rows[0] == (1, 'a') and rows[0].name == 'a' and rows[0]['id'] == 1
    assert rows[1]._asdict() == {'id': 2, 'name': None}
    assert result.fetchone() is None and result.rowcount == 2 and result.keys() == ['id', 'name']


def test_sql_commit_and_new_transaction():
    native = FakeNative([
        ok({'session_id': 's1'}), ok({'columns': [], 'rows_affected': 1}, b'[]'), ok(None),
        ok({'session_id': 's2'}), ok({'columns': ['n'], 'rows_affected': 1}, b'[[7]]'), ok(None),
    ])
    session = Outgoing({}, native).sql.get('db').session()
    session.execute('insert into t values (:a)', a=1)
    session.commit()
    assert session.execute('select count(*) as n from t').scalar() == 7
    session.close()
    assert [c[0] for c in native.calls] == [('sql', 'begin'), ('sql', 'execute'), ('sql', 'end')] * 2
    assert native.calls[2][1]['commit'] is True and native.calls[5][1]['commit'] is False


class FakeFtpNative(FakeNative):
    """Streams as the executor's ftp_download/ftp_upload do, over an in-memory tree."""

    def __init__(self, files, replies=None):
        super().__init__(replies)
        self.files = files

    def ftp_download(self, connection, path, sink):
        if path not in self.files:
            return 'remote_error', 'readbytes {}: 550 No such file'.format(path), 0
        data = self.files[path]
        for i in range(0, len(data), 3):
            sink(data[i:i + 3])
        return None, None, len(data)

    def ftp_upload(self, connection, path, source):
        parts = []
        while True:
            piece = source()
            if not piece:
                break
            parts.append(piece)
        self.files[path] = b''.join(parts)
        return None, None, len(self.files[path])


def test_ftp_names_and_streams():
    native = FakeFtpNative({'/in/a.txt': 'héllo'.encode()},
                           [ok({'names': ['a.txt'], 'flag': False, 'size': 0}),
                            ok({'names': [], 'flag': True, 'size': 0})])
    ftp = Outgoing({}, native).ftp.get('files')
    assert ftp.listdir('/in') == ['a.txt']
    assert ftp.readtext('/in/a.txt') == 'héllo'
    assert ftp.exists('/in') is True
    assert [c[0] for c in native.calls] == [('ftp', 'listdir'), ('ftp', 'exists')]
    import io
    assert ftp.upload('/in/big', io.BytesIO(b'x' * 10), chunk_size=4) == 10
    assert native.files['/in/big'] == b'x' * 10
    ftp.writebytes('/in/c', b'abc')
    out_file = io.BytesIO()
    assert ftp.download('/in/c', out_file) == 3 and out_file.getvalue() == b'abc'
    with pytest.raises(out.RemoteError, match='550'):
        ftp.readbytes('/nope')


def test_stubs_win_and_unknown_kinds_are_named():
    class Stub:
        pass
    stub = Stub()
    o = Outgoing({'sql': {'db': stub}}, FakeNative())
    assert o.sql.get('db') is stub
    assert isinstance(o.sql.get('other'), out.SQLConnection)
    with pytest.raises(AttributeError, match='no connection type'):
        o.telnet
    # Without an executor (plain pytest), an unstubbed connection is a clear error.
    with pytest.raises(out.ConnectionNotConfigured, match="outgoing SQL connection 'db'"):
        Outgoing({}).sql['db']


def test_request_queue_metadata():
    from shoal.service import Request
    r = Request({'a': 1}, b'{"a": 1}', None, {'type': 'amqp', 'meta': {
        'queue': 'q', 'attempt': '2', 'headers': '{"h": "v"}'}})
    assert r.amqp.queue == 'q' and r.amqp.attempt == '2' and r.amqp.headers == {'h': 'v'}
    assert r.zmq is None and r.ibm_mq is None
    assert Request({}, b'', None, None).amqp is None
    assert isinstance(Service, type)
