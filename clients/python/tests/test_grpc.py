"""invoke over the gateway's public gRPC Invoker."""

import pytest

from shoal_client import AuthError, BadRequest, NotFound, ServiceError, Timeout, TransportError
from shoal_client.grpc import GrpcClient


def test_grpc_invoke_and_errors(cluster):
    with GrpcClient(cluster.grpc_addr, password=cluster.password) as g:
        r = g.invoke('client.echo', {'over': 'grpc'}, cid='grpc-cid-1')
        assert r.status == 200 and r.cid == 'grpc-cid-1'
        assert r.json() == {'got': {'over': 'grpc'}, 'cid': 'grpc-cid-1'}
        assert r.headers['content-type'] == 'application/json'
        with pytest.raises(NotFound):
            g.invoke('no.such-service')
        with pytest.raises(BadRequest) as e:
            g.invoke('client.needs', {'cust_code': 'x'})
        assert 'age' in e.value.message
        with pytest.raises(ServiceError) as e:
            g.invoke('client.fails')
        assert e.value.cid
        with pytest.raises(Timeout):
            g.invoke('client.slow', {'seconds': 2}, timeout=0.3)
    # A channel's security definition is accepted too.
    with GrpcClient(cluster.grpc_addr, auth=('partner', 'partner-pw')) as g:
        assert g.invoke('hello.say-hello', {'name': 'P'}).json()['greeting'] == 'Hello, P!'
    with GrpcClient(cluster.grpc_addr, password='wrong') as g:
        with pytest.raises(AuthError):
            g.invoke('client.echo')
    with GrpcClient('127.0.0.1:1', password='x') as g:
        with pytest.raises(TransportError):
            g.invoke('client.echo', timeout=3)
