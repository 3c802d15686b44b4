"""The dashboard and the alert rules that ship with Shoal (helm/shoal/monitoring/), against
real tools: `promtool` checks the rules and runs their unit tests, and a real Prometheus
(Debian's) scrapes a real `shoal up` under load — calls that succeed, fail and are
refused, AMQP messages processed and dead-lettered through RabbitMQ, a scheduled job — and
every query of every dashboard panel, evaluated against it, returns data; every rule
evaluates without error."""

import json
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
import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
MONITORING = REPO / 'helm' / 'shoal' / 'monitoring'
RULES = [MONITORING / 'alerts.yaml', REPO / 'k8s' / 'monitoring' / 'shoal-alerts.yaml']
DASHBOARD = MONITORING / 'dashboard.json'
PASSWORD = 'monitoring-test-password'
RABBIT = 'amqp://guest:guest@127.0.0.1:5672/%2f'


def until(check, patience, what):
    deadline = time.monotonic() + patience
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, ValueError, KeyError) as e:
            last = e
        time.sleep(0.25)
    pytest.fail('{} did not hold in {} s (last: {!r})'.format(what, patience, last))


def bin_dir():
    if os.environ.get('SHOAL_BIN_DIR'):
        return pathlib.Path(os.environ['SHOAL_BIN_DIR'])
    target = os.environ.get('CARGO_TARGET_DIR') or os.path.expanduser('~/.cache/shoal-target')
    return pathlib.Path(target) / 'debug'


def free_port():
    for _ in range(200):
        port = random.randint(20000, 30000)
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
    raise RuntimeError('no free port')


def panel_queries():
    """(panel title, PromQL) of every target of every panel, with Grafana's variables as a
    dashboard at rest has them ($service: all; $__rate_interval: 1m)."""
    out = []
    for p in json.loads(DASHBOARD.read_text())['panels']:
        for t in p.get('targets', []):
            expr = t['expr'].replace('$__rate_interval', '1m').replace('$service', '.*')
            out.append((p['title'], expr))
    return out


# --- promtool ----------------------------------------------------------------------------

@pytest.mark.parametrize('rules', RULES, ids=lambda p: p.name)
def test_promtool_checks_the_rules(rules):
    r = subprocess.run(['promtool', 'check', 'rules', str(rules)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'SUCCESS' in r.stdout


def test_the_rules_fire_on_what_they_describe(tmp_path):
    """promtool's rule unit tests: synthetic series in, the expected alerts out."""
    shutil.copy(MONITORING / 'alerts.yaml', tmp_path / 'alerts.yaml')
    shutil.copy(HERE / 'alerts_test.yaml', tmp_path / 'alerts_test.yaml')
    r = subprocess.run(['promtool', 'test', 'rules', 'alerts_test.yaml'], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_panel_has_a_query_and_a_title():
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash['panels'] if p['type'] != 'row']
    assert len(panels) >= 15
    for p in panels:
        assert p['title'] and p['targets'], p
    titles = ' '.join(p['title'] for p in panels).lower()
    for what in ('server error ratio', 'p99 answer time', 'saturation', 'backlog', 'dead letters',
                 'job runs', 'certificate'):
        assert what in titles, what


# --- A real Prometheus scraping a real cluster ---------------------------------------------

CONFIG = """
security:
  - {{name: partner, type: basic_auth, username: partner, password: partner-pw-1}}
outgoing:
  - {{name: rabbit, type: amqp, url: "{rabbit}"}}
  - {{name: bus, type: amqp, definition: rabbit, routing_key: "{queue}"}}
channels:
  - {{name: echo, type: http, service: mon.echo, url_path: /mon/echo}}
  - {{name: fails, type: http, service: mon.fails, url_path: /mon/fails}}
  - {{name: guarded, type: http, service: mon.echo, url_path: /mon/guarded, security: partner}}
  - {{name: publish, type: http, service: mon.publish, url_path: /mon/publish}}
  - {{name: sink, type: amqp, service: mon.sink, definition: rabbit, queue: "{queue}", max_redeliveries: 1}}
jobs:
  - {{name: every-second, type: interval, seconds: 1, service: mon.echo}}
"""


class Cluster:
    def __init__(self):
        shoal = bin_dir() / 'shoal'
        if not shoal.exists():
            pytest.fail('{} is missing: build the workspace first'.format(shoal))
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix='shoal-monitoring-'))
        (self.dir / 'services').mkdir()
        shutil.copy(HERE / 'services' / 'monitored.py', self.dir / 'services')
        self.queue = 'shoal-monitoring-{}-{}'.format(os.getpid(), random.randint(0, 10**9))
        (self.dir / 'shoal.yaml').write_text(CONFIG.format(rabbit=RABBIT, queue=self.queue))
        store, http, grpc, admin, ops = [free_port() for _ in range(5)]
        self.admin_url = 'http://127.0.0.1:{}'.format(admin)
        self.http_url = 'http://127.0.0.1:{}'.format(http)
        env = dict(os.environ, SHOAL_ADMIN_PASSWORD=PASSWORD, SHOAL_LOG='warn')
        self.log = open(self.dir / 'shoal.log', 'wb')
        self.proc = subprocess.Popen(
            [str(shoal), 'up', '--dir', str(self.dir),
             '--store-listen', '127.0.0.1:{}'.format(store), '--http-listen', '127.0.0.1:{}'.format(http),
             '--grpc-listen', '127.0.0.1:{}'.format(grpc), '--admin-listen', '127.0.0.1:{}'.format(admin),
             '--gateway-ops-listen', '127.0.0.1:{}'.format(ops)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def ready():
            if self.proc.poll() is not None:
                pytest.fail('shoal up exited: ' + (self.dir / 'shoal.log').read_text()[-3000:])
            members = self.api('GET', '/cluster').json()['members']
            roles = {role for role, ms in members.items() if ms}
            ok = httpx.post(self.http_url + '/mon/echo', json={}, timeout=2).status_code == 200
            return ok and {'gateway', 'executor', 'connectors', 'kvdb-proxy', 'scheduler'} <= roles
        until(ready, 90, 'the cluster ready')

    def api(self, method, path, **kw):
        return httpx.request(method, self.admin_url + '/api/v1' + path, auth=('admin', PASSWORD),
                             timeout=10, **kw)

    def ops_targets(self):
        members = self.api('GET', '/cluster').json()['members']
        return sorted({m['ops_addr'] for ms in members.values() for m in ms if m.get('ops_addr')})

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope='module')
def cluster():
    c = Cluster()
    yield c
    c.stop()


@pytest.fixture(scope='module')
def prometheus(cluster):
    if not shutil.which('prometheus'):
        pytest.fail('prometheus is not installed (Debian: apt-get install prometheus; scripts/test does it)')
    d = pathlib.Path(tempfile.mkdtemp(prefix='shoal-prometheus-'))
    shutil.copy(MONITORING / 'alerts.yaml', d / 'alerts.yaml')
    (d / 'prometheus.yml').write_text(yaml.safe_dump({
        'global': {'scrape_interval': '1s', 'evaluation_interval': '1s'},
        'rule_files': ['alerts.yaml'],
        'scrape_configs': [{'job_name': 'shoal', 'static_configs': [{'targets': cluster.ops_targets()}]}],
    }))
    port = free_port()
    log = open(d / 'prometheus.log', 'wb')
    proc = subprocess.Popen(
        ['prometheus', '--config.file', str(d / 'prometheus.yml'), '--storage.tsdb.path', str(d / 'data'),
         '--web.listen-address', '127.0.0.1:{}'.format(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = 'http://127.0.0.1:{}'.format(port)

    def up():
        if proc.poll() is not None:
            pytest.fail('prometheus exited: ' + (d / 'prometheus.log').read_text()[-3000:])
        return httpx.get(url + '/-/ready', timeout=2).status_code == 200
    until(up, 30, 'Prometheus ready')
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    shutil.rmtree(d, ignore_errors=True)


def load(cluster, seconds):
    """Mixed traffic: successes, server errors, refusals, bad input, messages (one poison)."""
    end = time.monotonic() + seconds
    with httpx.Client(timeout=10) as h:
        h.post(cluster.http_url + '/mon/publish',
               json={'messages': [{'n': i} for i in range(20)] + [{'poison': True}]})
        while time.monotonic() < end:
            assert h.post(cluster.http_url + '/mon/echo', json={'x': 1}).status_code == 200
            assert h.post(cluster.http_url + '/mon/fails', json={}).status_code == 500
            assert h.post(cluster.http_url + '/mon/guarded', json={}).status_code == 401
            # A wrong password: refused, then throttled — on the same keep-alive connection
            # (a refusal before the body arrived used to close it under the client:
            # tests/tests/hostile_wire.rs a_refusal_before_the_body_keeps_the_connection).
            wrong = h.post(cluster.http_url + '/mon/guarded', json={}, auth=('partner', 'wrong-pw'))
            assert wrong.status_code in (401, 429), wrong.status_code
            assert h.post(cluster.http_url + '/mon/echo', content=b'{bad').status_code == 400


def query(prom, expr):
    r = httpx.get(prom + '/api/v1/query', params={'query': expr}, timeout=10)
    body = r.json()
    assert body.get('status') == 'success', (expr, body)
    return body['data']['result']


def test_every_dashboard_query_returns_data_from_a_real_cluster(cluster, prometheus):
    # Two scrapes at least of the traffic: rate() needs two samples.
    load(cluster, 6)
    until(lambda: query(prometheus, 'sum(shoal_gateway_channel_requests_total)'), 30,
          'Prometheus has scraped the gateway')
    missing = {}
    for title, expr in panel_queries():
        def has_data(expr=expr):
            load(cluster, 0.3)
            return query(prometheus, expr)
        try:
            until(has_data, 45, 'data for {!r}'.format(title))
        except pytest.fail.Exception:
            missing[title] = expr
    assert not missing, 'panels without data: {}'.format(json.dumps(missing, indent=2))


def test_every_rule_evaluates_against_the_real_series(cluster, prometheus):
    def evaluated():
        groups = httpx.get(prometheus + '/api/v1/rules', timeout=10).json()['data']['groups']
        rules = [r for g in groups for r in g['rules']]
        return rules if rules and all(r.get('lastEvaluation', '').startswith('2') for r in rules) else None
    rules = until(evaluated, 30, 'every rule evaluated')
    bad = [(r['name'], r.get('lastError')) for r in rules if r.get('health') != 'ok']
    assert not bad, bad
    names = {r['name'] for r in rules}
    assert len(names) == sum(len(g['rules']) for g in yaml.safe_load((MONITORING / 'alerts.yaml').read_text())['groups'])
