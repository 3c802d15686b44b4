"""``shoal-client``: call Shoal services from any Python application.

>>> from shoal_client import Client
>>> with Client('http://127.0.0.1:11225', password='...') as shoal:
...     result = shoal.invoke('hello.say-hello', {'name': 'you'})
...     result.status, result.json(), result.cid

``AsyncClient`` is the same with ``await``; ``shoal_client.grpc.GrpcClient`` invokes over
gRPC; ``shoal_client.compat.zato`` stands in for zato-client. Errors are exceptions:
see ``shoal_client.errors``.
"""

from ._async import AsyncChannel, AsyncClient
from ._core import InvokeResult, Retry
from ._sync import Channel, Client
from .errors import AuthError, BadRequest, NotFound, ServiceError, ShoalError, Timeout, TransportError

__version__ = '0.1.0'

__all__ = ['Client', 'AsyncClient', 'Channel', 'AsyncChannel', 'InvokeResult', 'Retry', 'ShoalError',
           'TransportError', 'Timeout', 'AuthError', 'NotFound', 'BadRequest', 'ServiceError']
