"""The executor's side of the SDK: the service store, deployment and invocation.

The Rust executor calls ``deploy``, ``invoke`` and ``list_services``; nothing here blocks on
Rust, so the GIL is only held while Python runs.
"""

import ast
import collections
import importlib.util
import json
import logging
import re
import sys
import threading
import time
import traceback
import types

from shoal.service import (Service, ServiceError, MethodNotAllowed, Request, ChannelInfo, Payload,
                           Bunch, service_name, new_cid)
from shoal.simpleio import definition_for, NotGiven
from shoal import numbers
from shoal import trace
from shoal.context import LocalLocks, ClusterLocks, background_pool

try:
    # SHA-256 without OpenSSL: hashlib would load and initialise libcrypto in every
    # executor (4 MB resident, measured) for the one digest deploys need. The same
    # built-in module hashlib itself falls back to; `_sha2` from Python 3.12 on.
    from _sha2 import sha256 as _sha256
except ImportError:  # pragma: no cover - depends on the Python version
    try:
        from _sha256 import sha256 as _sha256
    except ImportError:
        from hashlib import sha256 as _sha256

HTTP_VERBS = ('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS')

logger = logging.getLogger('shoal.executor')
# Every log record carries its call's cid and trace id; a call's lines are kept with it.
trace.install()


class DeadlineExceeded(BaseException):
    """Raised inside a service that ran past its deadline (its caller already got a 504).
    A BaseException, so a broad ``except Exception`` in the service does not swallow it."""


class DeployError(Exception):
    """A module failed to import; ``str()`` names the file and line."""


# Error codes that are the caller's fault (4xx); every other failure is a server error.
CLIENT_ERROR_CODES = frozenset((
    'bad_request', 'unauthorized', 'forbidden', 'not_found', 'method_not_allowed', 'conflict',
    'payload_too_large', 'uri_too_long', 'request_timeout', 'too_many_requests'))


def _outcome_of(exc, status):
    """'ok', 'client_error' or 'server_error' of a call that raised ``exc`` (or None) and
    answered ``status``."""
    if exc is not None:
        if isinstance(exc, ServiceError) and getattr(exc, 'code', '') in CLIENT_ERROR_CODES:
            return 'client_error'
        return 'server_error'
    if status >= 500:
        return 'server_error'
    if status >= 400:
        return 'client_error'
    return 'ok'


class _Entry:
    __slots__ = ('cls', 'module', 'hash', 'deployed_at_ms', 'invocations', 'errors',
                 'client_errors', 'total_us', 'recent_us')

    def __init__(self, cls, module, digest, deployed_at_ms):
        self.cls = cls
        self.module = module
        self.hash = digest
        self.deployed_at_ms = deployed_at_ms
        self.invocations = 0
        # Server errors (the service failed: 5xx) and client errors (it refused the
        # request: 4xx) apart, as everywhere else in Shoal.
        self.errors = 0
        self.client_errors = 0
        self.total_us = 0
        # The last 1,024 handler times, for the p99 that `shoal services` shows.
        self.recent_us = collections.deque(maxlen=1024)

    def p99_us(self):
        if not self.recent_us:
            return 0
        ordered = sorted(self.recent_us)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def imported_modules(source, package='', tree=None):
    """Module names a source imports, top-level and dotted, relative imports resolved
    against ``package`` (for redeploying dependents). ``tree``: its AST, when parsed
    already."""
    if tree is None:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return set()
    names = set()

    def add(dotted):
        parts = dotted.split('.')
        names.update('.'.join(parts[:i]) for i in range(1, len(parts) + 1))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                base = node.module
            elif node.level > 0 and package:
                parts = package.split('.')
                keep = len(parts) - (node.level - 1)
                if keep <= 0:
                    continue
                base = '.'.join(parts[:keep] + ([node.module] if node.module else []))
            else:
                continue
            add(base)
            for a in node.names:
                add('{}.{}'.format(base, a.name))
    return names


_ELEM_DOC = re.compile(r'^\s*(?:[-*]\s*|:param\s+)([A-Za-z_][\w.]*)\s*(?::|\s-\s)\s*(.+)$')


def _cleandoc(doc):
    """``inspect.cleandoc``: tabs expanded, the first line's leading blanks and the other
    lines' common indentation removed, blank lines at both ends dropped. Here so that the
    runtime need not import ``inspect`` (and ``dis``, ``opcode``) in every executor."""
    lines = doc.expandtabs().split('\n')
    indents = [len(ln) - len(ln.lstrip()) for ln in lines[1:] if ln.lstrip()]
    margin = min(indents) if indents else 0
    lines = [lines[0].lstrip()] + [ln[margin:] for ln in lines[1:]]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return '\n'.join(lines)


def service_doc(cls, sio=None):
    """What a service's docstring says, as Zato's apispec reads it: the first line is the
    summary, the rest the description; a line of ``@tags`` tags it (``@internal`` hides it
    from the API catalogue); ``- name: text`` (or ``:param name: text``) documents a
    SimpleIO element, as does ``doc=`` on an element (``Int('age', doc='...')``). A
    ``mcp_annotations`` dict on the class gives MCP's tool hints (``readOnlyHint``...)."""
    raw = cls.__dict__.get('__doc__') or ''
    lines = _cleandoc(raw).splitlines() if raw.strip() else []
    summary = lines[0].strip() if lines else ''
    tags, elements, rest = [], {}, []
    for line in lines[1:]:
        words = line.split()
        if words and all(w.startswith('@') and len(w) > 1 for w in words):
            tags.extend(w[1:] for w in words)
            continue
        m = _ELEM_DOC.match(line)
        if m:
            elements[m.group(1)] = m.group(2).strip()
            continue
        rest.append(line)
    if summary.startswith('@'):
        tags.extend(w[1:] for w in summary.split() if w.startswith('@'))
        summary = ''
    if sio is not None:
        for e, _ in list(sio.input) + list(sio.output):
            d = e.kwargs.get('doc') if hasattr(e, 'kwargs') else None
            if d:
                elements.setdefault(e.name, str(d))
    out = {'summary': summary, 'description': '\n'.join(rest).strip(), 'tags': tags,
           'elements': elements}
    # MCP's tool hints (readOnlyHint, destructiveHint, idempotentHint, openWorldHint,
    # title), for the MCP channels' tools/list.
    hints = getattr(cls, 'mcp_annotations', None)
    if isinstance(hints, dict):
        out['annotations'] = {str(k): v for k, v in hints.items()
                              if isinstance(v, (bool, str))}
    return out


def _package_of(module_name, origin):
    """``__package__`` of a module: itself for a package's ``__init__``, else its parent."""
    if origin.endswith('__init__.py'):
        return module_name
    return module_name.rpartition('.')[0]


def _read_user_config(paths):
    """Zato's user config: every .ini/.conf/.config file of ``paths`` (files or folders) as
    ``{file stem: {section: {key: value}}}``, values as strings."""
    import configparser
    import os
    out = Bunch()
    files = []
    for p in paths:
        if os.path.isdir(p):
            files.extend(os.path.join(p, f) for f in sorted(os.listdir(p)))
        elif os.path.isfile(p):
            files.append(p)
    for f in files:
        name, ext = os.path.splitext(os.path.basename(f))
        if ext not in ('.ini', '.conf', '.config') or name.startswith('.'):
            continue
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str
        try:
            with open(f, encoding='utf-8') as fh:
                parser.read_file(fh)
        except (OSError, configparser.Error) as e:
            logger.error('user config %s not read: %s', f, e)
            continue
        out[name] = Bunch({sec: Bunch(parser[sec]) for sec in parser.sections()})
    if 'user' not in out:
        out['user'] = Bunch(out)
    return out


class Runtime:
    def __init__(self):
        self.services = {}       # name -> _Entry
        self.modules = {}        # module name -> (hash, [service names])
        self.sources = {}        # module name -> (source, origin, imported module names)
        self.importers = {}      # module name -> names of the deployed modules importing it
        self.lock = threading.RLock()
        self.interrupted = set()   # thread idents that may hold a pending DeadlineExceeded
        # Filled by the executor (or by shoal.testing stubs):
        self.outgoing = {}         # kind -> {name: connection}
        self.caches = {}           # name -> cache
        self.kvdb_conn = None
        self.kv = None             # the KVDB transport behind self.kvdb and self.cache
        self.stubs = {}            # service name -> callable(payload) -> response
        self.native = None         # the executor's _shoal_native module, when running in one
        self.locks = LocalLocks()
        self._background = None
        self.user_config_paths = []
        self._user_config = None
        self._user_config_read = 0.0
    # -- setting up --------------------------------------------------------------------
    def add_virtualenv(self, path):
        """Adds a virtualenv's site-packages to the import path (its .pth files too), after
        checking that it was made for this interpreter. Returns the folder added."""
        import os
        import site
        cfg = os.path.join(path, 'pyvenv.cfg')
        if not os.path.isfile(cfg):
            raise DeployError('{} is not a virtualenv (no pyvenv.cfg)'.format(path))
        version = ''
        with open(cfg, encoding='utf-8') as fh:
            for line in fh:
                key, _, value = line.partition('=')
                if key.strip() in ('version', 'version_info'):
                    version = value.strip()
        mine = '{}.{}'.format(*sys.version_info[:2])
        theirs = '.'.join(version.split('.')[:2])
        if theirs != mine:
            raise DeployError('the virtualenv {} is for Python {} but this executor runs Python {}; '
                              'make it with python{} -m venv'.format(path, version or '?', mine, mine))
        sp = os.path.join(path, 'lib', 'python' + mine, 'site-packages')
        if not os.path.isdir(sp):
            raise DeployError('{} has no {}'.format(path, sp))
        site.addsitedir(sp)
        logger.info('using the virtualenv %s (%s)', path, sp)
        return sp

    def add_import_path(self, path):
        """Puts a folder (the pickup folder, for its packages) on the import path."""
        if path not in sys.path:
            sys.path.append(path)

    def load_static(self, name):
        """Imports an installed module or package (and, for a package, every module in it)
        and registers the services they define. Returns the service names."""
        import pkgutil
        try:
            top = importlib.import_module(name)
        except BaseException as e:
            raise DeployError('static module {} did not import: {}: {}'.format(name, type(e).__name__, e)) from None
        modules = [top]
        if hasattr(top, '__path__'):
            for info in pkgutil.walk_packages(top.__path__, prefix=name + '.'):
                try:
                    modules.append(importlib.import_module(info.name))
                except BaseException as e:
                    raise DeployError('static module {} did not import: {}: {}'.format(
                        info.name, type(e).__name__, e)) from None
        names = []
        for m in modules:
            origin = getattr(m, '__file__', None) or '<{}>'.format(m.__name__)
            try:
                with open(origin, 'rb') as fh:
                    digest = _sha256(fh.read()).hexdigest()
            except OSError:
                digest = _sha256(m.__name__.encode()).hexdigest()
            names.extend(self._register(m.__name__, m, digest, origin, None))
        return names

    def user_config(self):
        """The user config, re-read at most once a second when a file changed."""
        now = time.monotonic()
        if self._user_config is None or now - self._user_config_read > 1.0:
            stamp = self._user_config_stamp()
            if self._user_config is None or stamp != getattr(self, '_user_config_mtime', None):
                self._user_config = _read_user_config(self.user_config_paths)
                self._user_config_mtime = stamp
            self._user_config_read = now
        return self._user_config

    def _user_config_stamp(self):
        import os
        stamp = []
        for p in self.user_config_paths:
            files = [os.path.join(p, f) for f in sorted(os.listdir(p))] if os.path.isdir(p) else [p]
            for f in files:
                try:
                    st = os.stat(f)
                    stamp.append((f, st.st_mtime_ns, st.st_size))
                except OSError:
                    pass
        return tuple(stamp)

    # -- deployment --------------------------------------------------------------------
    def deploy(self, module_name, source, origin):
        """Imports ``source`` as ``module_name``; on success its services replace the old
        ones and modules that import it are redeployed too. Returns (service names, hash).
        Raises DeployError and keeps the old version when the module does not import."""
        names, digest = self._deploy_one(module_name, source, origin)
        self._redeploy_dependents(module_name, set([module_name]))
        return names, digest

    def _redeploy_dependents(self, changed, done):
        for dep in sorted(self.importers.get(changed, ())):
            if dep in done or dep not in self.sources:
                continue
            src, org, _ = self.sources[dep]
            done.add(dep)
            try:
                self._deploy_one(dep, src, org)
                logger.info('redeployed %s because it imports %s', dep, changed)
            except DeployError as e:
                logger.error('redeploying %s after %s changed failed: %s', dep, changed, e)
            self._redeploy_dependents(dep, done)

    def _deploy_one(self, module_name, source, origin):
        digest = _sha256(source.encode('utf-8')).hexdigest()
        code_origin = origin or '<{}>'.format(module_name)
        module = types.ModuleType(module_name)
        module.__file__ = code_origin
        # Packages of a pickup folder (a Zato project): relative imports and submodules.
        package = _package_of(module_name, code_origin)
        module.__package__ = package
        if code_origin.endswith('__init__.py'):
            import os
            module.__path__ = [os.path.dirname(code_origin)]
        try:
            # Parsed once: the tree gives the code and the module's imports.
            tree = ast.parse(source, code_origin)
            code = compile(tree, code_origin, 'exec')
            previous = sys.modules.get(module_name)
            sys.modules[module_name] = module
            try:
                exec(code, module.__dict__)
            except BaseException:
                if previous is not None:
                    sys.modules[module_name] = previous
                else:
                    sys.modules.pop(module_name, None)
                raise
        except SyntaxError as e:
            raise DeployError('{}:{}: SyntaxError: {}'.format(e.filename or code_origin, e.lineno, e.msg)) from None
        except BaseException as e:
            tb = traceback.extract_tb(e.__traceback__)
            where = next((f for f in reversed(tb) if f.filename == code_origin), tb[-1] if tb else None)
            line = '{}:{}'.format(where.filename, where.lineno) if where else code_origin
            raise DeployError('{}: {}: {}'.format(line, type(e).__name__, e)) from None
        if '.' in module_name:
            parent = sys.modules.get(module_name.rpartition('.')[0])
            if parent is not None:
                setattr(parent, module_name.rpartition('.')[2], module)
        return self._register(module_name, module, digest, code_origin, source, tree), digest

    def _register(self, module_name, module, digest, code_origin, source, tree=None):
        """Registers the services ``module`` defines (replacing the module's older ones).
        ``source`` is kept for redeploying dependents (None: an installed module)."""
        now_ms = int(time.time() * 1000)
        found = []
        for _, obj in sorted(vars(module).items()):
            if isinstance(obj, type) and issubclass(obj, Service) and obj is not Service and obj.__module__ == module_name:
                found.append(obj)
        for cls in found:
            try:
                definition_for(cls)
            except (ValueError, TypeError) as e:
                raise DeployError('{}: {}: SimpleIO of {}: {}'.format(code_origin, type(e).__name__, cls.__name__, e)) from None
        with self.lock:
            old = self.modules.get(module_name, (None, []))[1]
            names = []
            for cls in found:
                name = service_name(cls)
                cls.name = name
                self.services[name] = _Entry(cls, module_name, digest, now_ms)
                names.append(name)
            for gone in set(old) - set(names):
                self.services.pop(gone, None)
            self.modules[module_name] = (digest, names)
            if source is not None:
                package = _package_of(module_name, code_origin)
                imports = imported_modules(source, package, tree)
                self._index_imports(module_name, imports)
                self.sources[module_name] = (source, code_origin, imports)
        return names

    def _index_imports(self, module_name, imports):
        """Keeps ``importers`` (who imports what) in step with ``module_name``'s imports."""
        old = self.sources.get(module_name, (None, None, set()))[2]
        for gone in old - imports:
            self.importers.get(gone, set()).discard(module_name)
        for name in imports:
            self.importers.setdefault(name, set()).add(module_name)

    def undeploy(self, module_name):
        with self.lock:
            _, names = self.modules.pop(module_name, (None, []))
            self._index_imports(module_name, set())
            self.sources.pop(module_name, None)
            for n in names:
                self.services.pop(n, None)
            sys.modules.pop(module_name, None)
        return names

    def module_hash(self, module_name):
        return self.modules.get(module_name, (None, []))[0]

    def list_services(self):
        with self.lock:
            out = []
            for name, e in sorted(self.services.items()):
                mean = e.total_us // e.invocations if e.invocations else 0
                sio = definition_for(e.cls)
                out.append((name, e.module, e.hash, e.deployed_at_ms, e.invocations,
                            e.errors, mean, '{}.{}'.format(e.cls.__module__, e.cls.__name__),
                            e.p99_us(), json.dumps(sio.describe()) if sio else '',
                            json.dumps(service_doc(e.cls, sio)), e.client_errors))
            return out

    # -- invocation --------------------------------------------------------------------
    def invoke(self, name, payload, raw_request, cid, channel, http):
        """Runs one invocation. Returns (status, payload, headers, content_type, log lines
        or None). Raises ServiceError for expected failures; anything else is a service
        error that the caller logs with its traceback (``take_call_log`` then gives the
        lines it logged)."""
        tp = (channel.get('traceparent') if channel else None) or trace.current()
        call = trace.Call(cid, tp)
        with call:
            try:
                out = self._invoke(name, payload, raw_request, cid, channel, http)
            except BaseException:
                trace._call.failed_lines = call.lines
                raise
        return out + ((call.lines or None),)

    def take_call_log(self):
        """The lines the last failed call of this thread logged."""
        lines = getattr(trace._call, 'failed_lines', None) or []
        trace._call.failed_lines = None
        return lines

    def _invoke(self, name, payload, raw_request, cid, channel, http):
        if self.interrupted:
            self._clear_pending_interrupt()
        entry = self.services.get(name)
        if entry is None:
            raise ServiceError('no such service: {}'.format(name), 'not_found')
        cls = entry.cls
        svc = cls()
        svc.name = name
        svc.cid = cid or new_cid()
        svc._channel_info = channel
        svc.request = Request(payload, raw_request, http, channel)
        svc._runtime = self
        sio = cls.__dict__.get('_shoal_sio', NotGiven)
        if sio is NotGiven:
            sio = definition_for(cls)
        if sio is not None and sio.output:
            svc.response.payload = Payload()
        started = time.perf_counter()
        failure = None
        try:
            if sio is not None and sio.input:
                svc.request.input = Bunch(sio.parse_input(svc.request.input))
            handler = self._handler(svc, http)
            if svc.accept() is False:
                raise ServiceError('request not accepted by service {}'.format(name), 'bad_request')
            svc.before_handle()
            handler()
            svc.after_handle()
            if sio is not None and sio.output:
                out = svc.response.payload
                if isinstance(out, Payload):
                    out = out.value()
                if not isinstance(out, (str, bytes)):
                    svc.response.payload = sio.serialise(out)
        except BaseException as e:
            failure = e
            raise
        finally:
            took = int((time.perf_counter() - started) * 1_000_000)
            entry.invocations += 1
            entry.total_us += took
            entry.recent_us.append(took)
            try:
                status = int(svc.response.status_code or 200)
            except (TypeError, ValueError):
                status = 200
            outcome = _outcome_of(failure, status)
            if outcome == 'server_error':
                entry.errors += 1
            elif outcome == 'client_error':
                entry.client_errors += 1
        r = svc.response
        return (int(r.status_code or 200), r.payload, dict(r.headers or {}), r.content_type)

    def interrupt(self, ident):
        """Raises DeadlineExceeded in the thread ``ident`` at its next bytecode."""
        import ctypes
        n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(DeadlineExceeded))
        if n:
            self.interrupted.add(ident)
        return bool(n)

    def _clear_pending_interrupt(self):
        ident = threading.get_ident()
        if ident in self.interrupted:
            import ctypes
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
            self.interrupted.discard(ident)

    @staticmethod
    def _handler(svc, http):
        """``handle_<VERB>`` when the class has any and the call is HTTP, else ``handle``."""
        method = http.get('method', '').upper() if http else ''
        if not method:
            return svc.handle
        cls = type(svc)
        verbs = cls.__dict__.get('_shoal_verbs')
        if verbs is None:
            verbs = [v for v in HTTP_VERBS if callable(getattr(cls, 'handle_' + v, None))]
            cls._shoal_verbs = verbs
        if verbs and method:
            h = getattr(svc, 'handle_' + method, None)
            if h is None:
                raise MethodNotAllowed('{} does not handle {}; it handles {}'.format(
                    svc.name, method, ', '.join(verbs)))
            return h
        return svc.handle

    def attach_native(self, native):
        """Called by the executor: remote invoke and cluster-wide locks go through Rust."""
        self.native = native
        self.locks = ClusterLocks(native)
        if hasattr(native, 'kvdb_call'):
            from shoal.kvdb import NativeTransport
            self.kv = NativeTransport(native)

    @property
    def background(self):
        if self._background is None:
            self._background = background_pool()
        return self._background

    def invoke_from(self, caller, name, payload):
        """``self.invoke``: a stub, a service of this executor, or one elsewhere."""
        stub = self.stubs.get(name)
        if stub is not None:
            return stub(payload)
        if name in self.services or self.native is None:
            with trace.span('invoke ' + name, **{'shoal.service': name}):
                out = self.invoke(name, payload, b'', caller.cid,
                                  {'name': caller.channel.name, 'type': 'invoke',
                                   'traceparent': trace.current()}, None)[1]
            return out
        status, out, code, message = self.native.invoke_remote(
            name, numbers.dumps(payload, default=str), caller.cid, trace.current() or None)
        if code:
            raise ServiceError(message, code)
        return out

    def invoke_async(self, caller, name, payload, callback, cid):
        # The trace goes on in the background thread, from the span that asked.
        tp = trace.current()

        def run():
            with trace.Call(cid, tp):
                try:
                    response = self.invoke_from(caller, name, payload)
                except Exception as e:
                    logger.error('invoke_async of %s failed (cid %s): %s', name, cid, e)
                    return
                for cb in ([callback] if isinstance(callback, str) else list(callback or [])):
                    self.invoke_callback(caller, cb, response)
        self.background.submit(run)
        return cid

    def invoke_callback(self, caller, name, payload):
        try:
            self.invoke_from(caller, name, payload)
        except Exception as e:
            logger.error('callback %s failed (cid %s): %s', name, caller.cid, e)

    def register(self, module_name, classes, digest='', source='', origin=''):
        """Adds service classes directly (``shoal.testing``), without importing a file."""
        now_ms = int(time.time() * 1000)
        names = []
        with self.lock:
            for cls in classes:
                definition_for(cls)
                name = service_name(cls)
                cls.name = name
                self.services[name] = _Entry(cls, module_name, digest, now_ms)
                names.append(name)
        return names


runtime = Runtime()


def format_exception(e):
    return ''.join(traceback.format_exception(type(e), e, e.__traceback__))
