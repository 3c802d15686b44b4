"""Shoal's images, built with podman from local files (k8s/images/build --debug) and run
the way the chart runs them: as uid 10001, on a read-only root filesystem with only
/run/shoal writable, one process per container — on the host's loopback (no podman
network), against a real etcd."""

import base64
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
CONF = REPO / 'k8s' / 'images' / 'containers.conf'
TAG = 'ci'
ENV = dict(os.environ, CONTAINERS_CONF=str(CONF))
PASSWORD = 'image-test-password'

SERVICE = '''from zato.server.service import Service

class FromImage(Service):
    name = 'image.hello'

    def handle(self):
        import sys
        self.response.payload = {'hello': 'from the image', 'python': sys.version.split()[0],
                                 'prefix': sys.prefix}
'''


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def podman(*args, check=True):
    return subprocess.run(['podman', *args], capture_output=True, text=True, env=ENV, check=check)


@pytest.fixture(scope='module')
def images():
    if shutil.which('podman') is None:
        pytest.fail('podman is missing: apt-get install podman buildah debootstrap runc')
    r = subprocess.run(['bash', str(REPO / 'k8s' / 'images' / 'build'), '--debug', '--tag', TAG],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.split()


@pytest.fixture(scope='module')
def etcd():
    port, peer = free_port(), free_port()
    data = tempfile.mkdtemp(prefix='shoal-image-etcd-')
    proc = subprocess.Popen(['etcd', '--data-dir', data, '--listen-client-urls', 'http://127.0.0.1:{}'.format(port),
                             '--advertise-client-urls', 'http://127.0.0.1:{}'.format(port),
                             '--listen-peer-urls', 'http://127.0.0.1:{}'.format(peer),
                             '--initial-advertise-peer-urls', 'http://127.0.0.1:{}'.format(peer),
                             '--initial-cluster', 'default=http://127.0.0.1:{}'.format(peer)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until(lambda: get('http://127.0.0.1:{}/health'.format(port))[0] == 200, what='etcd healthy')
    yield 'http://127.0.0.1:{}'.format(port)
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(data, ignore_errors=True)


def get(url, method='GET', body=None, auth=None):
    req = urllib.request.Request(url, method=method, data=body)
    if auth:
        req.add_header('Authorization', 'Basic ' + base64.b64encode(auth.encode()).decode())
    req.add_header('Content-Type', 'application/json')
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b''


def until(check, patience=60.0, what='the condition'):
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail('{} did not hold in {} s'.format(what, patience))


@pytest.fixture(scope='module')
def certs(tmp_path_factory):
    """A cluster CA and a certificate per role, from `shoal tls-secret` (what the chart's
    Secret holds), as files the image's uid can read."""
    import yaml
    from harness import bin_dir
    d = tmp_path_factory.mktemp('tls')
    out = subprocess.run([str(bin_dir() / 'shoal'), 'tls-secret'], check=True, capture_output=True,
                         text=True).stdout
    secret = yaml.safe_load(out)
    for k, v in secret['stringData'].items():
        (d / k).write_text(v)
        os.chmod(d / k, 0o644)
    os.chmod(d, 0o755)
    return d


def tls(certs, role):
    """The env and volume that give a container its role's certificate."""
    env = {'SHOAL_TLS_CA': '/etc/shoal/tls/ca.crt', 'SHOAL_TLS_CERT': '/etc/shoal/tls/{}.crt'.format(role),
           'SHOAL_TLS_KEY': '/etc/shoal/tls/{}.key'.format(role)}
    return env, (certs, '/etc/shoal/tls')


def run(image, env, volumes=()):
    """Starts a container as the chart would; answers its id. /run/shoal is a fresh
    world-writable host folder, as an emptyDir is (podman 4.3's tmpfs options cannot set
    its mode under --read-only)."""
    scratch = tempfile.mkdtemp(prefix='shoal-emptydir-')
    os.chmod(scratch, 0o777)
    args = ['run', '-d', '--network', 'host', '--read-only', '--read-only-tmpfs=false',
            '--user', '10001:10001', '-v', '{}:/run/shoal:rw'.format(scratch), '--cap-drop', 'ALL',
            '--security-opt', 'no-new-privileges']
    for k, v in env.items():
        args += ['-e', '{}={}'.format(k, v)]
    for host, inside in volumes:
        args += ['-v', '{}:{}:ro'.format(host, inside)]
    return podman(*args, image).stdout.strip()


def stop(cid):
    logs = podman('logs', cid, check=False).stdout[-2000:]
    podman('rm', '-f', cid, check=False)
    return logs


@pytest.mark.parametrize('component,port', [('gateway', None), ('connectors', 'SHOAL_LISTEN'),
                                            ('scheduler', 'SHOAL_LISTEN'), ('kvdb-proxy', 'SHOAL_LISTEN')])
def test_each_image_starts_and_answers_live(images, etcd, certs, component, port):
    ops = free_port()
    env = {'SHOAL_ETCD': etcd, 'SHOAL_OPS_LISTEN': '127.0.0.1:{}'.format(ops), 'SHOAL_CLUSTER': 'img-' + component}
    tls_env, tls_volume = tls(certs, component)
    env.update(tls_env)
    if port:
        env[port] = '127.0.0.1:{}'.format(free_port())
    if component == 'gateway':
        env.update({'SHOAL_ADMIN_PASSWORD': PASSWORD, 'SHOAL_HTTP_LISTEN': '127.0.0.1:{}'.format(free_port()),
                    'SHOAL_GRPC_LISTEN': '127.0.0.1:{}'.format(free_port()),
                    'SHOAL_ADMIN_LISTEN': '127.0.0.1:{}'.format(free_port())})
    cid = run('localhost/shoal-{}:{}'.format(component, TAG), env, volumes=[tls_volume])
    try:
        until(lambda: get('http://127.0.0.1:{}/live'.format(ops))[0] == 200, what=component + ' /live')
        until(lambda: get('http://127.0.0.1:{}/ready'.format(ops))[0] == 200, what=component + ' /ready')
        inspect = json.loads(podman('inspect', cid).stdout)[0]
        assert inspect['Config']['User'] == '10001:10001'
        assert inspect['HostConfig']['ReadonlyRootfs'] is True
    finally:
        logs = stop(cid)
    assert 'panicked' not in logs, logs


def test_the_executor_image_runs_a_service_on_its_own_libpython(images, etcd, certs, tmp_path):
    services = tmp_path / 'services'
    services.mkdir()
    (services / 'from_image.py').write_text(SERVICE)
    os.chmod(tmp_path, 0o755)
    os.chmod(services, 0o755)
    os.chmod(services / 'from_image.py', 0o644)
    # The loader resolves libpython from the image, not from the build machine.
    r = podman('run', '--rm', '--network', 'none', '--entrypoint', '/usr/bin/ldd',
               'localhost/shoal-executor:' + TAG, '/usr/local/bin/shoal-executor')
    lib = [line for line in r.stdout.splitlines() if 'libpython3.11' in line][0]
    assert '=> /lib/x86_64-linux-gnu/libpython3.11.so.1.0' in lib or '=> /usr/lib/' in lib, lib
    admin, ops_g, ops_e = free_port(), free_port(), free_port()
    # Two containers (two hostnames): the gateway reaches the executor over TCP, with
    # mutual TLS from the mounted certificates.
    gw_tls, tls_volume = tls(certs, 'gateway')
    ex_tls, _ = tls(certs, 'executor')
    gw = run('localhost/shoal-gateway:' + TAG, dict({
        'SHOAL_ETCD': etcd, 'SHOAL_CLUSTER': 'img-run', 'SHOAL_ADMIN_PASSWORD': PASSWORD,
        'SHOAL_OPS_LISTEN': '127.0.0.1:{}'.format(ops_g), 'SHOAL_ADMIN_LISTEN': '127.0.0.1:{}'.format(admin),
        'SHOAL_HTTP_LISTEN': '127.0.0.1:{}'.format(free_port()), 'SHOAL_GRPC_LISTEN': '127.0.0.1:{}'.format(free_port())},
        **gw_tls), volumes=[tls_volume])
    ex = run('localhost/shoal-executor:' + TAG, dict({
        'SHOAL_ETCD': etcd, 'SHOAL_CLUSTER': 'img-run', 'SHOAL_PICKUP_DIR': '/srv/shoal/services',
        'SHOAL_OPS_LISTEN': '127.0.0.1:{}'.format(ops_e), 'SHOAL_LISTEN': '127.0.0.1:{}'.format(free_port())},
        **ex_tls), volumes=[(services, '/srv/shoal/services'), tls_volume])
    try:
        url = 'http://127.0.0.1:{}/api/v1/services/image.hello/invoke'.format(admin)
        until(lambda: get(url, 'POST', b'{}', 'admin:' + PASSWORD)[0] == 200, what='the service from the image')
        status, body = get(url, 'POST', b'{}', 'admin:' + PASSWORD)
        answer = json.loads(body)
        assert answer['hello'] == 'from the image'
        assert answer['python'].startswith('3.11.')
        # Debian's CPython (merged /usr: its prefix is / or /usr), not the build machine's
        # (pyenv, another 3.11).
        assert answer['prefix'] in ('/', '/usr') and 'pyenv' not in answer['prefix'], answer
    except BaseException:
        # What the two containers said, for a failure that did not show it.
        for name, cid in (('executor', ex), ('gateway', gw)):
            r = podman('logs', cid, check=False)
            print('--- {} container log ---\n{}'.format(name, (r.stdout + r.stderr)[-6000:]))
        raise
    finally:
        logs = stop(ex) + stop(gw)
    assert 'panicked' not in logs, logs
