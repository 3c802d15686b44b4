"""The executor's side of the SDK: the service store, deployment and invocation.

The Rust executor calls ``deploy``, ``invoke`` and ``list_services``; nothing here blocks on
Rust, so the GIL is only held while Python runs.
"""

import hashlib
import importlib.util
import inspect
import logging
import sys
import threading
import time
import traceback
import types

from shoal.service import Service, ServiceError, Request, ChannelInfo, service_name, new_cid

logger = logging.getLogger('shoal.executor')


class DeployError(Exception):
    """A module failed to import; ``str()`` names the file and line."""


class _Entry:
    __slots__ = ('cls', 'module', 'hash', 'deployed_at_ms', 'invocations', 'errors', 'total_us')

    def __init__(self, cls, module, digest, deployed_at_ms):
        self.cls = cls
        self.module = module
        self.hash = digest
        self.deployed_at_ms = deployed_at_ms
        self.invocations = 0
        self.errors = 0
        self.total_us = 0


class Runtime:
    def __init__(self):
        self.services = {}       # name -> _Entry
        self.modules = {}        # module name -> (hash, [service names])
        self.lock = threading.RLock()

    # -- deployment --------------------------------------------------------------------
    def deploy(self, module_name, source, origin):
        """Imports ``source`` as ``module_name``; on success its services replace the old
        ones. Returns (service names, hash). Raises DeployError and keeps the old version
        when the module does not import."""
        digest = hashlib.sha256(source.encode('utf-8')).hexdigest()
        code_origin = origin or '<{}>'.format(module_name)
        module = types.ModuleType(module_name)
        module.__file__ = code_origin
        try:
            code = compile(source, code_origin, 'exec')
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

        now_ms = int(time.time() * 1000)
        found = []
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Service) and obj is not Service and obj.__module__ == module_name:
                found.append(obj)
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
        return names, digest

    def undeploy(self, module_name):
        with self.lock:
            _, names = self.modules.pop(module_name, (None, []))
            for n in names:
                self.services.pop(n, None)
            sys.modules.pop(module_name, None)
        return names

    def list_services(self):
        with self.lock:
            out = []
            for name, e in sorted(self.services.items()):
                mean = e.total_us // e.invocations if e.invocations else 0
                out.append((name, e.module, e.hash, e.deployed_at_ms, e.invocations,
                            e.errors, mean, '{}.{}'.format(e.cls.__module__, e.cls.__name__)))
            return out

    # -- invocation --------------------------------------------------------------------
    def invoke(self, name, payload, raw_request, cid, channel, http):
        """Runs one invocation. Returns (status, payload, headers, content_type).
        Raises ServiceError for expected failures; anything else is a service error that
        the caller logs with its traceback."""
        entry = self.services.get(name)
        if entry is None:
            raise ServiceError('no such service: {}'.format(name), 'not_found')
        svc = entry.cls()
        svc.name = name
        svc.cid = cid or new_cid()
        svc.channel = ChannelInfo(channel)
        svc.request = Request(payload, raw_request, http)
        svc._runtime = self
        started = time.perf_counter()
        ok = False
        try:
            if svc.accept() is False:
                raise ServiceError('request not accepted by service {}'.format(name), 'bad_request')
            svc.before_handle()
            svc.handle()
            svc.after_handle()
            ok = True
        finally:
            entry.invocations += 1
            entry.total_us += int((time.perf_counter() - started) * 1_000_000)
            if not ok:
                entry.errors += 1
        r = svc.response
        return (int(r.status_code or 200), r.payload, dict(r.headers or {}), r.content_type)

    def invoke_from(self, caller, name, payload):
        """``self.invoke`` between services held by this executor."""
        _, out, _, _ = self.invoke(name, payload, b'', caller.cid,
                                   {'name': caller.channel.name, 'type': 'invoke'}, None)
        return out


runtime = Runtime()


def format_exception(e):
    return ''.join(traceback.format_exception(type(e), e, e.__traceback__))
