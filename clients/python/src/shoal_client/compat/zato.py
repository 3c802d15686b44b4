"""Code written for PyPI's ``zato-client`` moves by changing one import::

    from zato.client import AnyServiceInvoker          # before
    from shoal_client.compat.zato import AnyServiceInvoker   # after

``AnyServiceInvoker(address, path, auth).invoke(name, payload)`` speaks Zato's invoke wire
(``POST /zato/admin/invoke``: the payload base64-encoded in, ``{"response": base64,
"zato_env": {...}}`` out) to a Shoal channel of ``type: invoke, wire: zato`` and returns an
object with ``.ok``, ``.data``, ``.details``, ``.cid``, ``.inner`` and ``.has_data``, as
zato-client does. Unlike zato-client it has finite timeouts and runs on Python 3.9-3.13;
a failure to connect raises ``shoal_client.TransportError`` (zato-client lets
``requests``' exception through).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Dict, Optional, Tuple

import httpx

from .. import _core

_PASS_THROUGH = ('channel', 'data_format', 'transport', 'is_async', 'expiration', 'pid', 'all_pids',
                 'timeout', 'skip_response_elem')


class ServiceInvokeResponse:
    """The answer of ``invoke``: ``ok`` (``zato_env.result == 'ZATO_OK'``), ``data`` (the
    service's response, a single top-level ``zato*`` key stripped), ``details`` (the
    error message), ``cid``, ``inner`` (the HTTP response)."""

    def __init__(self, inner: httpx.Response) -> None:
        self.inner = inner
        self.ok = False
        self.data: Any = None
        self.details: Any = None
        self.cid: Optional[str] = inner.headers.get('x-zato-cid')
        try:
            body = inner.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.details = inner.text
            return
        env = body.get('zato_env') or {}
        self.cid = self.cid or env.get('cid')
        self.ok = env.get('result') == 'ZATO_OK'
        self.details = env.get('details')
        raw = body.get('response')
        if self.ok and raw:
            data = json.loads(base64.b64decode(raw))
            if isinstance(data, dict) and len(data) == 1:
                (key, value), = data.items()
                if key.startswith('zato'):
                    data = value
            self.data = data

    @property
    def has_data(self) -> bool:
        return self.data is not None

    def __repr__(self) -> str:
        return '<ServiceInvokeResponse ok:{} cid:{} data:{!r:.80} details:{!r:.80}>'.format(
            self.ok, self.cid, self.data, self.details)


class AnyServiceInvoker:
    """Invokes any service through a Zato-wire invoke channel at ``address + path``."""

    def __init__(self, address: str, path: str = '/zato/admin/invoke', auth: Optional[Tuple[str, str]] = None,
                 session: Any = None, to_bunch: bool = False, max_response_repr: int = 2500,
                 max_cid_repr: int = 5, logger: Any = None, tls_verify: bool = True,
                 timeout: float = 30.0) -> None:
        self.address = address.rstrip('/')
        self.path = path
        self.auth = auth
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0), verify=tls_verify)

    def invoke(self, name: str, payload: Any = '', headers: Optional[Dict[str, str]] = None,
               **kwargs: Any) -> ServiceInvokeResponse:
        body: Dict[str, Any] = {
            'name': name,
            'payload': base64.b64encode(json.dumps(payload).encode('utf-8')).decode('ascii'),
            'channel': 'invoke', 'data_format': 'json', 'transport': None, 'is_async': False,
            'expiration': 15, 'pid': None, 'all_pids': False, 'timeout': None,
            'skip_response_elem': True,
        }
        body.update({k: v for k, v in kwargs.items() if k in _PASS_THROUGH})
        url = self.address + self.path
        try:
            resp = self._http.post(url, content=json.dumps(body).encode('utf-8'), headers=headers,
                                   auth=self.auth if self.auth is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise _core.transport_error(exc, url) from exc
        return ServiceInvokeResponse(resp)

    def invoke_async(self, name: str, payload: Any = '', **kwargs: Any) -> ServiceInvokeResponse:
        return self.invoke(name, payload, is_async=True, **kwargs)

    def close(self) -> None:
        self._http.close()
