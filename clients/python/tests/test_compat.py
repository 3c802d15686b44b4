"""shoal_client.compat.zato: zato-client's AnyServiceInvoker, one import changed."""

from shoal_client.compat.zato import AnyServiceInvoker


def test_any_service_invoker(cluster):
    client = AnyServiceInvoker(cluster.http_url, '/zato/admin/invoke', ('admin.invoke', 'zato-pw'))
    resp = client.invoke('hello.say-hello', {'name': 'Zato'})
    assert resp.ok and resp.has_data
    assert resp.data['greeting'] == 'Hello, Zato!'
    assert resp.cid and len(resp.cid) == 24

    missing = client.invoke('no.such-service', {})
    assert not missing.ok and 'no such service' in missing.details

    bad = AnyServiceInvoker(cluster.http_url, '/zato/admin/invoke', ('admin.invoke', 'wrong'))
    resp = bad.invoke('hello.say-hello', {})
    assert not resp.ok and resp.inner.status_code == 401
