"""The SDK's modules import each other without a circle (function-level imports included),
and every exception lives in shoal.errors under the names services have always used."""

import ast
import os

import shoal
import shoal.errors
import shoal.kvdb
import shoal.outgoing
import shoal.service
import shoal.simpleio

PKG = os.path.dirname(shoal.__file__)


def imports_of(path):
    """The shoal.* modules a file imports, anywhere in it."""
    tree = ast.parse(open(path).read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('shoal'):
            if node.module == 'shoal':
                out.update('shoal.' + a.name for a in node.names if os.path.exists(
                    os.path.join(PKG, a.name + '.py')))
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith('shoal.'))
    return out


def graph():
    g = {}
    for name in os.listdir(PKG):
        if name.endswith('.py') and name != '__init__.py':
            mod = 'shoal.' + name[:-3]
            g[mod] = {m for m in imports_of(os.path.join(PKG, name)) if m != mod}
    return g


def test_no_import_circle():
    g = graph()
    state = {}

    def visit(m, path):
        if state.get(m) == 'done':
            return
        assert state.get(m) != 'open', 'import circle: ' + ' -> '.join(path + [m])
        state[m] = 'open'
        for n in sorted(g.get(m, ())):
            visit(n, path + [m])
        state[m] = 'done'

    for m in sorted(g):
        visit(m, [])


def test_errors_imports_nothing_of_the_sdk():
    assert graph()['shoal.errors'] == set()


def test_every_exception_is_the_one_in_errors_under_its_old_name():
    pairs = [
        (shoal.service.ServiceError, 'shoal.service', 'ServiceError'),
        (shoal.service.BadRequest, 'shoal.service', 'BadRequest'),
        (shoal.simpleio.SerialisationError, 'shoal.simpleio', 'SerialisationError'),
        (shoal.kvdb.ConnectionError, 'shoal.kvdb', 'ConnectionError'),
        (shoal.kvdb.ResponseError, 'shoal.kvdb', 'ResponseError'),
        (shoal.outgoing.RemoteError, 'shoal.outgoing', 'RemoteError'),
        (shoal.outgoing.ConnectionNotConfigured, 'shoal.outgoing', 'ConnectionNotConfigured'),
    ]
    for cls, module, name in pairs:
        assert cls.__module__ == module and cls.__name__ == name
        assert issubclass(cls, shoal.errors.ServiceError)
        assert any(getattr(shoal.errors, n) is cls for n in shoal.errors.__all__), name
    assert shoal.kvdb.ConnectionError is shoal.errors.KVDBConnectionError
    assert shoal.ServiceError is shoal.errors.ServiceError


def test_the_runtime_leaves_heavy_modules_unloaded():
    """Every executor imports the runtime at start. hashlib loads and initialises libcrypto
    (4 MB resident, measured) for the one digest deploys take, and inspect brings dis and
    opcode (0.4 MB) for two helpers: the runtime uses the built-in SHA-256 module and its
    own ``_cleandoc`` instead. A service that imports them still can."""
    import subprocess
    import sys
    heavy = ('_hashlib', 'hashlib', '_ssl', 'ssl', 'inspect', 'dis')
    code = ('import sys, shoal._runtime, zato.server.service; '
            'print(sorted(m for m in {!r} if m in sys.modules))'.format(heavy))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(PKG)), check=True)
    assert out.stdout.strip() == '[]', out.stdout + out.stderr
