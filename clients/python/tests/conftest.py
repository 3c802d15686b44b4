"""A real `shoal up` cluster for the client tests: the binaries from the cargo target
folder ($SHOAL_BIN_DIR, else $CARGO_TARGET_DIR/debug, else ~/.cache/shoal-target/debug),
on free loopback ports, in a temporary project folder with the fixture services and a
shoal.yaml of channels and security definitions. Stopped at the end of the session."""

import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import httpx
import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
PASSWORD = 'client-test-password'

CONFIG = """
security:
  - {name: partner, type: basic_auth, username: partner, password: partner-pw}
  - {name: zato-admin, type: basic_auth, username: admin.invoke, password: zato-pw}
channels:
  - {name: echo, type: http, service: client.echo, url_path: /echo}
  - {name: secure-echo, type: http, service: client.echo, url_path: /secure/echo, security: partner}
  - {name: hello, type: http, service: hello.say-hello, url_path: /hello, method: GET}
  - {name: zato-invoke, type: invoke, wire: zato, url_path: /zato/admin/invoke, security: zato-admin}
"""


def until(check, patience=15.0, what='the condition'):
    """Calls ``check`` until it returns a true value (returned) or raises nothing the
    client calls NotFound; fails after ``patience`` seconds. No fixed sleeps in tests."""
    from shoal_client import NotFound
    deadline = time.monotonic() + patience
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
            last = value
        except NotFound as e:
            last = e
        time.sleep(0.05)
    pytest.fail('{} did not hold in {} s (last: {!r})'.format(what, patience, last))


def bin_dir():
    if os.environ.get('SHOAL_BIN_DIR'):
        return pathlib.Path(os.environ['SHOAL_BIN_DIR'])
    target = os.environ.get('CARGO_TARGET_DIR') or os.path.expanduser('~/.cache/shoal-target')
    return pathlib.Path(target) / 'debug'


def free_port():
    """A port below the ephemeral range (where the cluster's children bind port 0)."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
    raise RuntimeError('no free port')


class Cluster:
    def __init__(self):
        shoal = bin_dir() / 'shoal'
        if not shoal.exists():
            pytest.fail('{} is missing: build the workspace first (cargo build --workspace --bins)'.format(shoal))
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix='shoal-client-'))
        services = self.dir / 'services'
        services.mkdir()
        shutil.copy(HERE / 'services' / 'client_fixtures.py', services)
        shutil.copy(REPO / 'examples' / 'services' / 'hello.py', services)
        (self.dir / 'shoal.yaml').write_text(CONFIG)
        ports = [free_port() for _ in range(5)]
        store, http, grpc, admin, ops = ports
        self.admin_url = 'http://127.0.0.1:{}'.format(admin)
        self.http_url = 'http://127.0.0.1:{}'.format(http)
        self.grpc_addr = '127.0.0.1:{}'.format(grpc)
        self.password = PASSWORD
        env = dict(os.environ, SHOAL_ADMIN_PASSWORD=PASSWORD, SHOAL_LOG='warn')
        self.log = open(self.dir / 'shoal.log', 'wb')
        self.proc = subprocess.Popen(
            [str(shoal), 'up', '--dir', str(self.dir),
             '--store-listen', '127.0.0.1:{}'.format(store), '--http-listen', '127.0.0.1:{}'.format(http),
             '--grpc-listen', self.grpc_addr, '--admin-listen', '127.0.0.1:{}'.format(admin),
             '--gateway-ops-listen', '127.0.0.1:{}'.format(ops)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self, patience=90.0):
        """Until the gateway and an executor serve, and shoal.yaml's channels answer."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail('shoal up exited: {}'.format((self.dir / 'shoal.log').read_text()[-3000:]))
            try:
                r = httpx.post(self.http_url + '/echo', json={}, timeout=2)
                services = httpx.get(self.admin_url + '/api/v1/services', auth=('admin', PASSWORD), timeout=2)
                names = {s['name'] for s in services.json().get('services', [])}
                if r.status_code == 200 and {'client.echo', 'hello.say-hello'} <= names:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        pytest.fail('the cluster was not ready in {} s: {}'.format(
            patience, (self.dir / 'shoal.log').read_text()[-3000:]))

    def gateway_pids(self):
        """The pids of the registered gateways (a killed one stays until its lease ends)."""
        r = httpx.get(self.admin_url + '/api/v1/cluster', auth=('admin', PASSWORD), timeout=5)
        return [m['pid'] for m in r.json()['members']['gateway']]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope='session')
def cluster():
    c = Cluster()
    os.environ['SHOAL_ADMIN_PASSWORD'] = PASSWORD
    yield c
    c.stop()


@pytest.fixture
def client(cluster):
    from shoal_client import Client
    with Client(cluster.admin_url, password=cluster.password, channel_url=cluster.http_url) as c:
        yield c
