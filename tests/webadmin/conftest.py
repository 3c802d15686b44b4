"""A real `shoal up` for the web admin tests, and a real browser (Debian's Chromium driven
by Playwright). Binaries from $SHOAL_BIN_DIR, else $CARGO_TARGET_DIR/debug, else
~/.cache/shoal-target/debug; free loopback ports; stopped at the end of the session."""

import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import httpx
import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
PASSWORD = 'web-admin-test-password'
CLUSTER_NAME = 'web-admin-test'
CHROMIUM = os.environ.get('SHOAL_CHROMIUM', '/usr/lib/chromium/chromium')
SHOTS = REPO / 'docs' / 'img' / 'web-admin'

CONFIG = """
security:
  - {name: partner, type: basic_auth, username: partner, password: partner-pw}
channels:
  - {name: greet, type: http, service: webadmin.greet, url_path: /greet}
  - {name: echo, type: http, service: webadmin.echo, url_path: /echo}
  - {name: secure-echo, type: http, service: webadmin.echo, url_path: /secure/echo, security: partner}
  - {name: broken, type: http, service: webadmin.broken, url_path: /broken}
outgoing:
  - {name: notes-db, type: sql, url: "sqlite::memory:", pool_size: 1}
jobs:
  - {name: nightly-greeting, type: interval, hours: 24, service: webadmin.greet, extra: {name: scheduler}}
"""


def until(check, patience=15.0, what='the condition'):
    """Calls ``check`` until it returns a true value (returned); fails after ``patience``
    seconds. Tests wait on conditions, never for fixed times."""
    deadline = time.monotonic() + patience
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, ValueError, KeyError) as e:
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
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix='shoal-webadmin-'))
        services = self.dir / 'services'
        services.mkdir()
        shutil.copy(HERE / 'services' / 'webadmin_fixtures.py', services)
        shutil.copy(REPO / 'examples' / 'services' / 'hello.py', services)
        (self.dir / 'shoal.yaml').write_text(CONFIG)
        store, http, grpc, admin, ops = [free_port() for _ in range(5)]
        self.admin_url = 'http://127.0.0.1:{}'.format(admin)
        self.http_url = 'http://127.0.0.1:{}'.format(http)
        env = dict(os.environ, SHOAL_ADMIN_PASSWORD=PASSWORD, SHOAL_LOG='warn',
                   SHOAL_CLUSTER_NAME=CLUSTER_NAME)
        self.log = open(self.dir / 'shoal.log', 'wb')
        self.proc = subprocess.Popen(
            [str(shoal), 'up', '--dir', str(self.dir),
             '--store-listen', '127.0.0.1:{}'.format(store), '--http-listen', '127.0.0.1:{}'.format(http),
             '--grpc-listen', '127.0.0.1:{}'.format(grpc), '--admin-listen', '127.0.0.1:{}'.format(admin),
             '--gateway-ops-listen', '127.0.0.1:{}'.format(ops)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.wait_ready()

    def api(self, method, path, **kw):
        return httpx.request(method, self.admin_url + '/api/v1' + path, auth=('admin', PASSWORD), timeout=10, **kw)

    def wait_ready(self, patience=90.0):
        """Until every role has a member, the fixture services are listed and the greet
        channel answers."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail('shoal up exited: {}'.format((self.dir / 'shoal.log').read_text()[-3000:]))
            try:
                r = httpx.post(self.http_url + '/greet', json={'name': 'x'}, timeout=2)
                members = self.api('GET', '/cluster').json()['members']
                roles = {role for role, ms in members.items() if ms}
                if r.status_code == 200 and {'gateway', 'executor', 'connectors', 'kvdb-proxy', 'scheduler'} <= roles:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        pytest.fail('the cluster was not ready in {} s: {}'.format(
            patience, (self.dir / 'shoal.log').read_text()[-3000:]))

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
    yield c
    c.stop()


@pytest.fixture(scope='session')
def browser():
    from playwright.sync_api import sync_playwright
    if not os.path.exists(CHROMIUM):
        pytest.fail('{} is missing: apt-get install chromium'.format(CHROMIUM))
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
        yield b
        b.close()


class Console:
    """A browser page's console errors and CSP violations (a test fails on any)."""

    def __init__(self, page):
        self.errors = []
        page.on('console', self.seen)
        page.on('pageerror', lambda e: self.errors.append(str(e)))

    def seen(self, m):
        # A 4xx the test provoked on purpose (a refused form) is logged by the browser
        # too; anything else (a CSP violation, a script error, a 5xx) is not expected.
        if m.type == 'error' and not re.match(r'Failed to load resource: .* status of 4\d\d', m.text):
            self.errors.append(m.text)


@pytest.fixture
def page(browser, cluster):
    """A fresh browser context (no cookies) on a 1280x900 window; console errors fail
    the test."""
    ctx = browser.new_context(viewport={'width': 1280, 'height': 900}, base_url=cluster.admin_url)
    pg = ctx.new_page()
    # Confirmation dialogs (delete, roll back): recorded and accepted.
    dialogs = []

    def on_dialog(d):
        dialogs.append(d.message)
        d.accept()
    pg.on('dialog', on_dialog)
    pg.dialogs = dialogs
    console = Console(pg)
    yield pg
    ctx.close()
    assert console.errors == [], 'browser console errors: {}'.format(console.errors)


def login(page, password=PASSWORD):
    page.goto('/admin/')
    page.fill('#password', password)
    page.click('button[type=submit]')


@pytest.fixture
def admin(page):
    """A page logged in as admin, on the dashboard."""
    login(page)
    page.wait_for_url('**/admin/')
    return page


def shot(page, name):
    """Saves a screenshot for docs/web-admin.md."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    # caret='initial': hiding the caret would inject a <style>, which the CSP refuses.
    page.screenshot(path=str(SHOTS / (name + '.png')), full_page=True, caret='initial')
