"""What the sync and the async client share: request specs, the admin operations, the
retry policy, TLS settings, and turning answers into results or exceptions. Only the
I/O differs between ``Client`` and ``AsyncClient``."""

from __future__ import annotations

import json
import os
import random
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generic, List, Mapping, Optional, Tuple, TypeVar, Union
from urllib.parse import quote

import httpx

from .errors import AuthError, BadRequest, NotFound, ServiceError, ShoalError, Timeout, TransportError

T = TypeVar('T')

#: Where ``shoal up`` serves the admin API and the HTTP channels by default.
DEFAULT_ADMIN_URL = 'http://127.0.0.1:11225'
DEFAULT_CHANNEL_URL = 'http://127.0.0.1:11223'

#: Finite by default: 5 s to connect, 30 s for an answer.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

JSON = Any
Headers = Mapping[str, str]
Auth = Tuple[str, str]
CertSpec = Union[str, Tuple[str, str]]

_CID = re.compile(r'^[A-Za-z0-9._:-]{1,64}$')


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with full jitter: try ``attempts`` times in all, waiting a
    random time up to ``backoff * 2**n`` (at most ``max_backoff``) seconds before try n+1.

    Only failures that may pass are retried: no answer (connection refused or reset, a
    timeout) and 502/503/504. Never a 4xx, never another 5xx."""

    attempts: int = 3
    backoff: float = 0.2
    max_backoff: float = 3.0

    def delay(self, attempt: int) -> float:
        """The wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        return random.uniform(0, min(self.max_backoff, self.backoff * (2 ** (attempt - 1))))


#: Admin reads are idempotent: retried by default.
DEFAULT_READ_RETRY = Retry()
#: Never retry (the default for ``invoke``: a service may have side effects).
NO_RETRY = Retry(attempts=1)

_RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass
class InvokeResult:
    """A service's answer: ``status``, ``headers``, ``content`` (bytes), ``text``,
    ``json()``, the call's ``cid`` and ``elapsed`` seconds."""

    status: int
    headers: Dict[str, str]
    content: bytes
    cid: str
    elapsed: float

    @property
    def text(self) -> str:
        return self.content.decode('utf-8', errors='replace')

    def json(self) -> JSON:
        """The body as JSON (``None`` for an empty body)."""
        if not self.content.strip():
            return None
        return json.loads(self.content)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Spec:
    """One HTTP request: where, what, and whether repeating it is safe."""

    method: str
    url: str
    content: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    params: Optional[Dict[str, str]] = None
    timeout: Optional[float] = None
    auth: Optional[Auth] = None
    idempotent: bool = False


@dataclass(frozen=True)
class Op(Generic[T]):
    """An admin operation: the request and what to make of a 2xx answer."""

    spec: Spec
    parse: Callable[[httpx.Response], T]


def tls_context(verify: bool, ca_file: Optional[str], cert: Optional[CertSpec]) -> Union[bool, ssl.SSLContext]:
    """httpx's ``verify``: a context trusting ``ca_file`` (else the system's CAs) and
    presenting ``cert`` (a PEM with the key, or ``(cert, key)``); ``False`` only when asked."""
    if not verify:
        if ca_file or cert:
            raise ValueError('verify=False cannot be combined with ca_file or cert')
        return False
    if ca_file is None and cert is None:
        return True
    ctx = ssl.create_default_context(cafile=ca_file)
    if isinstance(cert, tuple):
        ctx.load_cert_chain(cert[0], cert[1])
    elif cert is not None:
        ctx.load_cert_chain(cert)
    return ctx


def context_path() -> str:
    """Where the CLI keeps its contexts: ``$SHOAL_CLI_CONFIG``, else
    ``$XDG_CONFIG_HOME/shoal/config.yaml``, else ``~/.config/shoal/config.yaml``."""
    env = os.environ.get('SHOAL_CLI_CONFIG')
    if env:
        return env
    base = os.environ.get('XDG_CONFIG_HOME') or os.path.join(os.path.expanduser('~'), '.config')
    return os.path.join(base, 'shoal', 'config.yaml')


def load_context(name: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The CLI's context ``name`` (else ``$SHOAL_CONTEXT``, else the current one), as
    ``shoal up`` and ``shoal config`` write it; None when there is none. A named context
    that does not exist is an error."""
    name = name or os.environ.get('SHOAL_CONTEXT') or None
    path = context_path()
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError:
        if name:
            raise AuthError('no context {!r}: {} cannot be read'.format(name, path))
        return None
    if not text.strip():
        return None
    try:
        doc = json.loads(text)  # what the CLI writes (JSON is YAML too)
    except ValueError:
        try:
            import yaml  # type: ignore[import-untyped]  # a file edited by hand
        except ImportError:
            raise AuthError('{} is not JSON; install PyYAML to read it as YAML'.format(path))
        doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise AuthError('{} is not a contexts file'.format(path))
    want = name or doc.get('current-context')
    for ctx in doc.get('contexts') or []:
        if isinstance(ctx, dict) and ctx.get('name') == want:
            return ctx
    if name:
        known = ', '.join(str(c.get('name')) for c in doc.get('contexts') or [] if isinstance(c, dict))
        raise AuthError('no context {!r} in {} (known: {})'.format(name, path, known or 'none'))
    return None


def admin_url(url: Optional[str]) -> str:
    """The given admin API URL, else ``SHOAL_ADMIN_URL`` (as the CLI), else the default."""
    return url or os.environ.get('SHOAL_ADMIN_URL') or DEFAULT_ADMIN_URL


def channel_url(url: Optional[str]) -> str:
    """The given HTTP channels URL, else ``SHOAL_CHANNEL_URL``, else the default."""
    return url or os.environ.get('SHOAL_CHANNEL_URL') or DEFAULT_CHANNEL_URL


def admin_password(password: Optional[str], dir: Optional[str] = None, user: str = 'admin') -> str:
    """The given password, else the environment's — ``SHOAL_ADMIN_PASSWORD`` for the
    bootstrap ``admin``, ``SHOAL_PASSWORD`` for another user — else, for ``admin``, the file
    ``shoal up`` writes: ``DIR/.shoal/admin-password`` (``dir``, else ``$SHOAL_DIR``, else
    the current folder), as the CLI reads them."""
    if password:
        return password
    env = os.environ.get('SHOAL_ADMIN_PASSWORD' if user == 'admin' else 'SHOAL_PASSWORD')
    if env:
        return env
    if user == 'admin':
        path = os.path.join(dir or os.environ.get('SHOAL_DIR') or '.', '.shoal', 'admin-password')
        try:
            with open(path, encoding='utf-8') as f:
                text = f.read().strip()
            if text:
                return text
        except OSError:
            pass
        raise AuthError('no admin password: pass password= or token=, set SHOAL_ADMIN_PASSWORD '
                        'or SHOAL_TOKEN, or run where `shoal up` runs (its .shoal/admin-password)')
    raise AuthError('no password for user {}: pass password= or set SHOAL_PASSWORD'.format(user))


def admin_credentials(user: str, password: Optional[str], token: Optional[str],
                      dir: Optional[str]) -> Tuple[Optional[Auth], Optional[str]]:
    """(Basic Auth, None) or (None, API token): a token given or in ``SHOAL_TOKEN`` wins."""
    tok = token or os.environ.get('SHOAL_TOKEN')
    if tok and not password:
        return None, tok.strip()
    return (user, admin_password(password, dir, user)), None


def _read_secret(path: str) -> str:
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read().strip()
    except OSError as e:
        raise AuthError('cannot read {}: {}'.format(path, e))
    if not text:
        raise AuthError('{} is empty'.format(path))
    return text


def resolve(admin_url_arg: Optional[str], user: Optional[str], password: Optional[str],
            token: Optional[str], dir: Optional[str],
            context: Optional[str]) -> Tuple[str, Optional[Auth], Optional[str], Optional[str]]:
    """(admin URL, Basic Auth, token, CA file) from the arguments, the environment and —
    when neither names the admin URL — the CLI's context, as the CLI resolves them."""
    url = admin_url_arg or os.environ.get('SHOAL_ADMIN_URL')
    ctx = load_context(context) if (context or not url) else None
    if ctx is not None and not url:
        url = str(ctx.get('admin_url') or '') or None
    who = user or (str(ctx['user']) if ctx and ctx.get('user') else None) or 'admin'
    tok = token or os.environ.get('SHOAL_TOKEN')
    if ctx is not None and not (tok or password):
        same_user = (ctx.get('user') or 'admin') == who
        env_pw = os.environ.get('SHOAL_ADMIN_PASSWORD' if who == 'admin' else 'SHOAL_PASSWORD')
        if same_user and ctx.get('token_file') and not user:
            tok = _read_secret(str(ctx['token_file']))
        elif same_user and ctx.get('password_file') and not env_pw:
            password = _read_secret(str(ctx['password_file']))
    auth, tok = admin_credentials(who, password, tok, dir)
    ca = str(ctx['ca']) if ctx and ctx.get('ca') else None
    return url or DEFAULT_ADMIN_URL, auth, tok, ca


def encode_payload(payload: JSON) -> Optional[bytes]:
    return None if payload is None else json.dumps(payload).encode('utf-8')


def call_headers(cid: Optional[str], timeout: Optional[float], admin: bool) -> Dict[str, str]:
    headers = {'accept': 'application/json'}
    if cid is not None:
        if not _CID.match(cid):
            raise ValueError('cid must be 1 to 64 letters, digits or . _ : -')
        headers['x-shoal-cid'] = cid
    if timeout is not None and admin:
        # The cluster stops waiting too (504) instead of running on after we gave up.
        headers['x-shoal-timeout-ms'] = str(max(1, int(timeout * 1000)))
    return headers


def result_of(resp: httpx.Response, elapsed: float) -> InvokeResult:
    """The result of a 2xx answer; raises the matching error for any other."""
    if not 200 <= resp.status_code < 300:
        raise error_of(resp)
    return InvokeResult(status=resp.status_code, headers=dict(resp.headers), content=resp.content,
                        cid=resp.headers.get('x-shoal-cid', ''), elapsed=elapsed)


def error_of(resp: httpx.Response) -> ShoalError:
    """The exception for a non-2xx answer, from Shoal's JSON error body when it has one."""
    status = resp.status_code
    code: Optional[str] = None
    element: Optional[str] = None
    cid: Optional[str] = resp.headers.get('x-shoal-cid')
    message = resp.text.strip()[:500] or resp.reason_phrase
    try:
        body = resp.json()
    except ValueError:
        body = None
    err = body.get('error') if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = err.get('code') or None
        message = str(err.get('message') or message)
        cid = err.get('cid') or cid
        element = err.get('element') or None
    kwargs: Dict[str, Any] = {'status': status, 'code': code, 'cid': cid}
    if status in (401, 403):
        return AuthError(message, **kwargs)
    if status == 404:
        return NotFound(message, **kwargs)
    if status == 504:
        return Timeout(message, **kwargs)
    if 400 <= status < 500:
        return BadRequest(message, element=element, **kwargs)
    return ServiceError(message, **kwargs)


def transport_error(exc: httpx.HTTPError, url: str) -> ShoalError:
    if isinstance(exc, httpx.TimeoutException):
        return Timeout('no answer from {} in time ({})'.format(url, type(exc).__name__))
    return TransportError('cannot reach {}: {}'.format(url, exc or type(exc).__name__))


def may_retry(outcome: Union[httpx.Response, ShoalError]) -> bool:
    if isinstance(outcome, httpx.Response):
        return outcome.status_code in _RETRY_STATUSES
    return isinstance(outcome, (TransportError, Timeout)) and outcome.status is None


class Clock:
    """Elapsed seconds of one call."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# --- The admin API ------------------------------------------------------------------

def seg(name: str) -> str:
    """A path segment, percent-encoded."""
    return quote(name, safe='')


class Admin:
    """Builds the admin API's operations (``/api/v1/...``) for one base URL."""

    def __init__(self, base: str, auth: Optional[Auth], token: Optional[str] = None) -> None:
        self.base = base.rstrip('/') + '/api/v1/'
        self.auth = auth
        self.token = token

    def spec(self, method: str, path: str, body: JSON = None, *, idempotent: bool = False,
             params: Optional[Dict[str, str]] = None, raw: Optional[bytes] = None,
             headers: Optional[Dict[str, str]] = None, timeout: Optional[float] = None) -> Spec:
        content = raw if raw is not None else encode_payload(body)
        h = {'accept': 'application/json'}
        if content is not None:
            h['content-type'] = 'application/json'
        if self.token:
            h['authorization'] = 'Bearer ' + self.token
        h.update(headers or {})
        return Spec(method, self.base + path, content=content, headers=h, params=params,
                    auth=self.auth, idempotent=idempotent, timeout=timeout)

    def get(self, path: str, params: Optional[Dict[str, str]] = None) -> Op[Dict[str, Any]]:
        """A GET answering a JSON object."""
        return Op(self.spec('GET', path, idempotent=True, params=params), json_object)

    def get_list(self, path: str, key: str, params: Optional[Dict[str, str]] = None) -> Op[List[Dict[str, Any]]]:
        """A GET answering ``{key: [objects]}``: the list."""
        def parse(r: httpx.Response) -> List[Dict[str, Any]]:
            items = json_object(r).get(key)
            if not isinstance(items, list):
                raise ServiceError('unexpected answer from {}: no list {!r}'.format(r.url, key))
            return items
        return Op(self.spec('GET', path, idempotent=True, params=params), parse)

    def write(self, method: str, path: str, body: JSON = None, params: Optional[Dict[str, str]] = None,
              raw: Optional[bytes] = None) -> Op[Dict[str, Any]]:
        """A POST, PUT or DELETE answering a JSON object (PUT and DELETE are idempotent)."""
        return Op(self.spec(method, path, body, idempotent=method in ('PUT', 'DELETE'), params=params,
                            raw=raw), json_object)

    def invoke(self, service: str, payload: JSON, timeout: Optional[float], cid: Optional[str]) -> Spec:
        return self.spec('POST', 'services/{}/invoke'.format(seg(service)), payload,
                         headers=call_headers(cid, timeout, admin=True), timeout=timeout)

    def deploy(self, files: List[Tuple[str, str]]) -> Op[Any]:
        body = {'files': [{'name': n, 'source': s} for n, s in files]}
        return self.write('POST', 'deploy', body)


def json_object(r: httpx.Response) -> Dict[str, Any]:
    """The JSON object of an answer (an empty body is an empty object)."""
    if not r.content.strip():
        return {}
    v = r.json()
    if not isinstance(v, dict):
        raise ServiceError('unexpected answer from {}: not a JSON object'.format(r.url))
    return v


def kvdb_keys(r: httpx.Response) -> List[str]:
    """The keys of a ``GET /kvdb`` answer."""
    keys = json_object(r).get('keys')
    if not isinstance(keys, list):
        raise ServiceError('unexpected answer from {}: no list of keys'.format(r.url))
    return [str(k) for k in keys]


def kvdb_list(admin: 'Admin', prefix: str, limit: int) -> 'Op[List[str]]':
    """The operation listing keys that start with ``prefix`` (at most ``limit``, sorted)."""
    return Op(admin.spec('GET', 'kvdb', idempotent=True,
                         params={'prefix': prefix, 'limit': str(limit)}), kvdb_keys)


def kvdb_value(v: Dict[str, Any]) -> Union[str, bytes]:
    """A KVDB answer's value: text, or bytes when it is not UTF-8."""
    if 'value_base64' in v:
        import base64
        return base64.b64decode(v['value_base64'])
    return str(v.get('value', ''))


def read_files(files: Tuple[Union[str, 'os.PathLike[str]', Tuple[str, str]], ...]) -> List[Tuple[str, str]]:
    """``deploy``'s arguments as (file name, source): paths are read, pairs kept."""
    out = []
    for f in files:
        if isinstance(f, tuple):
            out.append((f[0], f[1]))
        else:
            with open(f, encoding='utf-8') as fh:
                out.append((os.path.basename(os.fspath(f)), fh.read()))
    if not out:
        raise ValueError('deploy needs at least one file')
    return out


#: The kinds of configured objects, with their API path and the key of their list.
KINDS = {
    'channels': 'channels',
    'outgoing': 'outgoing',
    'security': 'security',
    'jobs': 'jobs',
}


def channel_spec(base: str, url: str, method: str, payload: JSON, content: Union[bytes, str, None],
                 params: Optional[Dict[str, str]], headers: Optional[Headers], auth: Optional[Auth],
                 timeout: Optional[float], cid: Optional[str], extra_headers: Optional[Headers]) -> Spec:
    """A request to an HTTP channel: ``url`` is absolute, or a path under ``base``."""
    full = url if url.startswith(('http://', 'https://')) else base.rstrip('/') + '/' + url.lstrip('/')
    h = call_headers(cid, timeout, admin=False)
    h.update(extra_headers or {})
    h.update(headers or {})
    if content is not None:
        body: Optional[bytes] = content.encode('utf-8') if isinstance(content, str) else content
    else:
        body = encode_payload(payload)
        if body is not None:
            h.setdefault('content-type', 'application/json')
    return Spec(method.upper(), full, content=body, headers=h, params=params, auth=auth,
                timeout=timeout, idempotent=method.upper() in ('GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'))
