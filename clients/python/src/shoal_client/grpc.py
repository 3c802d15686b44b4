"""``invoke`` over the gateway's public gRPC ``shoal.invoker.v1.Invoker`` (default port
11224). Needs the ``grpc`` extra: ``pip install 'shoal-client[grpc]'``.

>>> from shoal_client.grpc import GrpcClient
>>> with GrpcClient('127.0.0.1:11224', password='...') as shoal:
...     shoal.invoke('hello.say-hello', {'name': 'gRPC'}).json()

The Invoker admits the admin credentials or any of the cluster's security definitions:
Basic credentials (``auth=(user, password)``, or ``password=`` for the admin user) or an
API key (``api_key=(header, key)``)."""

from __future__ import annotations

import base64
import os
import re
import time
from typing import Any, Dict, Optional, Tuple, Union

import grpc

from . import _core
from ._core import JSON, InvokeResult, Retry
from ._proto.shoal.invoker.v1 import invoker_pb2 as pb
from .errors import AuthError, BadRequest, NotFound, ServiceError, ShoalError, Timeout, TransportError

#: The Invoker's one method.
INVOKE = '/shoal.invoker.v1.Invoker/Invoke'

_CID_IN_MESSAGE = re.compile(r'\(cid ([A-Za-z0-9._:-]+)\)$')


class GrpcClient:
    """The gateway's gRPC Invoker at ``address`` (``host:port``; else ``$SHOAL_GRPC_ADDR``,
    else 127.0.0.1:11224)."""

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        password: Optional[str] = None,
        auth: Optional[Tuple[str, str]] = None,
        api_key: Optional[Tuple[str, str]] = None,
        tls: bool = False,
        ca_file: Optional[str] = None,
        cert: Optional[Tuple[str, str]] = None,
        timeout: float = 30.0,
        retry: Retry = _core.NO_RETRY,
    ) -> None:
        address = address or os.environ.get('SHOAL_GRPC_ADDR') or '127.0.0.1:11224'
        if api_key is not None:
            self._metadata: Tuple[Tuple[str, Union[str, bytes]], ...] = ((api_key[0].lower(), api_key[1]),)
        else:
            user, secret = auth if auth is not None else ('admin', _core.admin_password(password))
            token = base64.b64encode('{}:{}'.format(user, secret).encode('utf-8')).decode('ascii')
            self._metadata = (('authorization', 'Basic ' + token),)
        if tls or ca_file or cert:
            root = open(ca_file, 'rb').read() if ca_file else None
            key = chain = None
            if cert is not None:
                chain, key = open(cert[0], 'rb').read(), open(cert[1], 'rb').read()
            creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key,
                                                 certificate_chain=chain)
            self._channel = grpc.secure_channel(address, creds)
        else:
            self._channel = grpc.insecure_channel(address)
        self.address = address
        self.timeout = timeout
        self.retry = retry
        self._invoke = self._channel.unary_unary(
            INVOKE,
            request_serializer=pb.InvokeRequest.SerializeToString,
            response_deserializer=pb.InvokeResponse.FromString,
        )

    def invoke(self, service: str, payload: JSON = None, *, timeout: Optional[float] = None,
               cid: Optional[str] = None, retry: Optional[Retry] = None) -> InvokeResult:
        """Invokes ``service`` with ``payload`` (JSON); raises the same errors as
        ``Client.invoke``. Retried only with ``retry`` (on UNAVAILABLE before a connection)."""
        body = _core.encode_payload(payload) or b''
        if cid is not None:
            _core.call_headers(cid, None, admin=False)  # validates it
        req = pb.InvokeRequest(service=service, payload=body, cid=cid or '')
        policy = retry or self.retry
        clock = _core.Clock()
        for attempt in range(1, max(1, policy.attempts) + 1):
            try:
                resp = self._invoke(req, timeout=timeout or self.timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                err = self._error(exc)
                if attempt < policy.attempts and isinstance(err, TransportError):
                    time.sleep(policy.delay(attempt))
                    continue
                raise err from None
            return InvokeResult(status=resp.status or 200,
                                headers=dict(resp.headers, **{'content-type': resp.content_type}),
                                content=bytes(resp.payload), cid=resp.cid, elapsed=clock.elapsed())
        raise AssertionError('unreachable')  # pragma: no cover

    def _error(self, exc: grpc.RpcError) -> ShoalError:
        code: Any = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
        m = _CID_IN_MESSAGE.search(details)
        cid = m.group(1) if m else None
        message = _CID_IN_MESSAGE.sub('', details).strip()
        kw: Dict[str, Any] = {'code': code.name.lower(), 'cid': cid}
        if code == grpc.StatusCode.UNAVAILABLE and not cid and _no_connection(details):
            return TransportError('cannot reach {}: {}'.format(self.address, message))
        # The deadline is sent to the server too (grpc-timeout). A Shoal server answers an
        # expired one DEADLINE_EXCEEDED; servers before 2026-12 (tonic's own timer) answered
        # CANCELLED "Timeout expired". Either way the call had no answer in time.
        if code == grpc.StatusCode.DEADLINE_EXCEEDED or (
                code == grpc.StatusCode.CANCELLED and message == _SERVER_DEADLINE):
            return Timeout(message or 'no answer in time', **kw)
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return AuthError(message, **kw)
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound(message, **kw)
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
                    grpc.StatusCode.FAILED_PRECONDITION):
            return BadRequest(message, **kw)
        return ServiceError(message, **kw)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> 'GrpcClient':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# What a tonic server answers (status CANCELLED) when a call's grpc-timeout passes.
_SERVER_DEADLINE = 'Timeout expired'


def _no_connection(details: str) -> bool:
    d = details.lower()
    return any(s in d for s in ('failed to connect', 'connection refused', 'connect failed',
                                'dns resolution failed', 'unavailable: ipv4'))
