"""The asynchronous client: ``AsyncClient`` (admin API and invoke) and ``AsyncChannel`` (one
HTTP channel). ``_sync.py`` is generated from this file by ``scripts/unasync.py``: edit here."""

from __future__ import annotations

import os
import asyncio
from typing import Any, Dict, List, Optional, Tuple, TypeVar, Union

import httpx

from . import _core
from ._core import JSON, Auth, CertSpec, Headers, InvokeResult, Op, Retry, Spec

T = TypeVar('T')
FileArg = Union[str, 'os.PathLike[str]', Tuple[str, str]]


class AsyncClient:
    """A Shoal cluster, through its admin API (``admin_url``, else ``$SHOAL_ADMIN_URL``, else
    http://127.0.0.1:11225) and its HTTP channels (``channel_url``, else
    ``$SHOAL_CHANNEL_URL``, else http://127.0.0.1:11223); as ``user`` (the bootstrap ``admin`` by
    default) with ``password``, else ``$SHOAL_ADMIN_PASSWORD`` (another user:
    ``$SHOAL_PASSWORD``), else ``DIR/.shoal/admin-password`` (``dir``, else ``$SHOAL_DIR``,
    else the current folder) — or with an API token (``token``, else ``$SHOAL_TOKEN``).
    With no admin URL given (nor ``$SHOAL_ADMIN_URL``), the CLI's context is used —
    ``context``, else ``$SHOAL_CONTEXT``, else the current one that ``shoal up`` wrote: its
    admin URL, user and password or token file.
    Thread-safe; reuse one (it pools connections); close it, or use it as a context manager.

    >>> async with AsyncClient(password='...') as shoal:
    ...     (await shoal.invoke('hello.say-hello', {'name': 'you'})).json()
    """

    def __init__(
        self,
        admin_url: Optional[str] = None,
        *,
        password: Optional[str] = None,
        user: Optional[str] = None,
        token: Optional[str] = None,
        dir: Optional[str] = None,
        context: Optional[str] = None,
        channel_url: Optional[str] = None,
        timeout: Union[float, httpx.Timeout] = _core.DEFAULT_TIMEOUT,
        verify: bool = True,
        ca_file: Optional[str] = None,
        cert: Optional[CertSpec] = None,
        read_retry: Retry = _core.DEFAULT_READ_RETRY,
        invoke_retry: Retry = _core.NO_RETRY,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        url, auth, tok, ctx_ca = _core.resolve(admin_url, user, password, token, dir, context)
        ca_file = ca_file or (ctx_ca if verify else None)
        self._admin = _core.Admin(url, auth, tok)
        self.channel_url = _core.channel_url(channel_url)
        self.read_retry = read_retry
        self.invoke_retry = invoke_retry
        self._http = httpx.AsyncClient(timeout=timeout, verify=_core.tls_context(verify, ca_file, cert),
                                  transport=transport)
        self.services = AsyncServices(self)
        self.channels = AsyncObjects(self, 'channels')
        self.outgoing = AsyncObjects(self, 'outgoing')
        self.security = AsyncObjects(self, 'security')
        self.jobs = AsyncJobs(self)
        self.kvdb = AsyncKVDB(self)

    # -- plumbing ---------------------------------------------------------------------
    async def _send(self, spec: Spec, retry: Retry) -> Tuple[httpx.Response, float]:
        """Sends ``spec``, retrying what may pass when ``retry`` allows; returns the last
        answer and the elapsed seconds of the call, or raises what stopped it."""
        clock = _core.Clock()
        attempts = max(1, retry.attempts)
        for attempt in range(1, attempts + 1):
            try:
                resp = await self._http.request(
                    spec.method, spec.url, content=spec.content, headers=spec.headers,
                    params=spec.params, auth=spec.auth,
                    timeout=spec.timeout if spec.timeout is not None else httpx.USE_CLIENT_DEFAULT)
            except httpx.HTTPError as exc:
                err = _core.transport_error(exc, spec.url)
                if attempt < attempts and _core.may_retry(err):
                    await asyncio.sleep(retry.delay(attempt))
                    continue
                raise err from exc
            if attempt < attempts and _core.may_retry(resp):
                await asyncio.sleep(retry.delay(attempt))
                continue
            return resp, clock.elapsed()
        raise AssertionError('unreachable')  # pragma: no cover

    async def _run(self, op: Op[T]) -> T:
        resp, _ = await self._send(op.spec, self.read_retry if op.spec.idempotent else _core.NO_RETRY)
        if not 200 <= resp.status_code < 300:
            raise _core.error_of(resp)
        return op.parse(resp)

    # -- invoking ---------------------------------------------------------------------
    async def invoke(self, service: str, payload: JSON = None, *, timeout: Optional[float] = None,
               cid: Optional[str] = None, retry: Optional[Retry] = None) -> InvokeResult:
        """Invokes ``service`` with ``payload`` (JSON) through the admin API; the answer
        is what the service's JSON channel would answer. Retried only with ``retry`` (or
        the client's ``invoke_retry``)."""
        spec = self._admin.invoke(service, payload, timeout, cid)
        resp, elapsed = await self._send(spec, retry or self.invoke_retry)
        return _core.result_of(resp, elapsed)

    def channel(self, url: str, *, auth: Optional[Auth] = None,
                headers: Optional[Headers] = None) -> 'AsyncChannel':
        """One HTTP channel: ``url`` is absolute, or a path under ``channel_url``.
        ``auth`` is Basic Auth; ``headers`` go with every call (an API key)."""
        return AsyncChannel(self, url, auth, headers)

    # -- the admin API ----------------------------------------------------------------
    async def deploy(self, *files: FileArg) -> Dict[str, Any]:
        """Deploys modules (paths, or ``(file name, source)`` pairs) to every executor;
        each is imported on one first, and one that does not import raises BadRequest."""
        return await self._run(self._admin.deploy(_core.read_files(files)))

    async def rollback(self, module: str) -> Dict[str, Any]:
        """Makes the previous deployment of ``module`` current again."""
        return await self._run(self._admin.write('POST', 'deploy/rollback', {'module': module}))

    async def modules(self) -> Dict[str, Any]:
        """Deployed modules with their history, and modules that failed to import."""
        return await self._run(self._admin.get('deploy'))

    async def apply(self, config: Dict[str, Any], *, prune: bool = False) -> Dict[str, Any]:
        """``shoal apply`` with a parsed document (``security``, ``channels``, ``outgoing``,
        ``jobs``): what was created, updated, unchanged and (with ``prune``) deleted."""
        params = {'prune': 'true'} if prune else None
        return await self._run(self._admin.write('POST', 'apply', config, params=params))

    async def export(self) -> Dict[str, Any]:
        """The whole configuration as ``apply`` takes it, without secrets."""
        return await self._run(self._admin.get('export'))

    async def cluster(self) -> Dict[str, Any]:
        """Members by role, and the leaders."""
        return await self._run(self._admin.get('cluster'))

    async def openapi(self) -> Dict[str, Any]:
        """The admin API's OpenAPI document."""
        return await self._run(self._admin.get('openapi.json'))

    async def requests(self, service: Optional[str] = None, limit: int = 100) -> List[Dict[str, Any]]:
        """The gateway's recent invocations (``service``: a name or a ``prefix*``)."""
        params = {'limit': str(limit)}
        if service:
            params['service'] = service
        return await self._run(self._admin.get_list('requests', 'requests', params))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> 'AsyncClient':
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncChannel:
    """An HTTP channel of the cluster (``AsyncClient.channel``)."""

    def __init__(self, client: AsyncClient, url: str, auth: Optional[Auth], headers: Optional[Headers]) -> None:
        self._client = client
        self.url = url
        self.auth = auth
        self.headers = dict(headers or {})

    async def invoke(self, payload: JSON = None, *, method: str = 'POST', content: Union[bytes, str, None] = None,
               params: Optional[Dict[str, str]] = None, headers: Optional[Headers] = None,
               timeout: Optional[float] = None, cid: Optional[str] = None,
               retry: Optional[Retry] = None) -> InvokeResult:
        """Calls the channel: ``payload`` as JSON, or ``content`` as it is (XML, form,
        text); ``params`` is the query string."""
        spec = _core.channel_spec(self._client.channel_url, self.url, method, payload, content,
                                  params, headers, self.auth, timeout, cid, self.headers)
        resp, elapsed = await self._client._send(spec, retry or self._client.invoke_retry)
        return _core.result_of(resp, elapsed)

    async def get(self, params: Optional[Dict[str, str]] = None, **kwargs: Any) -> InvokeResult:
        """``invoke(method='GET')``."""
        return await self.invoke(method='GET', params=params, **kwargs)


class AsyncServices:
    """``client.services``: the deployed services."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def list(self) -> List[Dict[str, Any]]:
        return await self._c._run(self._c._admin.get_list('services', 'services'))

    async def get(self, name: str) -> Dict[str, Any]:
        return await self._c._run(self._c._admin.get('services/' + _core.seg(name)))


class AsyncObjects:
    """``client.channels``, ``.outgoing``, ``.security``: list, get, put, delete."""

    def __init__(self, client: AsyncClient, kind: str) -> None:
        self._c = client
        self.kind = kind

    async def list(self) -> List[Dict[str, Any]]:
        return await self._c._run(self._c._admin.get_list(self.kind, _core.KINDS[self.kind]))

    async def get(self, name: str) -> Dict[str, Any]:
        return await self._c._run(self._c._admin.get(self.kind + '/' + _core.seg(name)))

    async def put(self, name: str, definition: Dict[str, Any]) -> Dict[str, Any]:
        """Creates or replaces ``name`` (the definition as in ``shoal.yaml``)."""
        body = dict(definition, name=name)
        return await self._c._run(self._c._admin.write('PUT', self.kind + '/' + _core.seg(name), body))

    async def delete(self, name: str) -> Dict[str, Any]:
        return await self._c._run(self._c._admin.write('DELETE', self.kind + '/' + _core.seg(name)))


class AsyncJobs(AsyncObjects):
    """``client.jobs``: as the other objects, plus ``run``."""

    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client, 'jobs')

    async def run(self, name: str) -> Dict[str, Any]:
        """Runs the job now, outside its schedule; returns the run's ``cid``."""
        return await self._c._run(self._c._admin.write('POST', 'jobs/{}/run'.format(_core.seg(name))))


class AsyncKVDB:
    """``client.kvdb``: the cluster's key/value store."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def get(self, key: str) -> Union[str, bytes]:
        """The value of ``key`` (text, or bytes when it is not UTF-8); NotFound if unset."""
        return _core.kvdb_value(await self._c._run(self._c._admin.get('kvdb/' + _core.seg(key))))

    async def ttl(self, key: str) -> Optional[float]:
        """Seconds until ``key`` expires, or None when it does not."""
        v = await self._c._run(self._c._admin.get('kvdb/' + _core.seg(key)))
        ms = v.get('ttl_ms', -1)
        return ms / 1000 if isinstance(ms, int) and ms >= 0 else None

    async def set(self, key: str, value: Union[str, bytes], *, expiry: Optional[int] = None) -> None:
        """Sets ``key`` (``expiry`` in seconds)."""
        raw = value.encode('utf-8') if isinstance(value, str) else value
        params = {'expiry': str(expiry)} if expiry is not None else None
        await self._c._run(self._c._admin.write('PUT', 'kvdb/' + _core.seg(key), params=params, raw=raw))

    async def delete(self, key: str) -> None:
        await self._c._run(self._c._admin.write('DELETE', 'kvdb/' + _core.seg(key)))

    async def list(self, prefix: str = '', *, limit: int = 100) -> List[str]:
        """Keys that start with ``prefix``, sorted (at most ``limit``: 1 to 1000)."""
        return await self._c._run(_core.kvdb_list(self._c._admin, prefix, limit))
