"""The Helm chart, offline: lint, render, validate against Kubernetes' own schemas (1.30 and
1.37, strict), the invariants a cluster operator relies on, k8s/ kept equal to the chart,
and — since no API server can run here — what the chart renders, run (harness.py) with the
real binaries and a real etcd."""

import base64
import json
import os
import pathlib
import subprocess
import time
import urllib.request

import pytest
import yaml

import harness

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
CHART = REPO / 'helm' / 'shoal'
CI_VALUES = sorted((CHART / 'ci').glob('*-values.yaml'))
KUBE_VERSIONS = ['1.30.0', '1.37.0']
# Kinds of custom resources (checked against their CRDs' schemas, not Kubernetes' own).
CUSTOM = ('ScaledObject', 'TriggerAuthentication', 'ServiceMonitor', 'PrometheusRule')
CRD_APIS = ['--api-versions', 'keda.sh/v1alpha1', '--api-versions', 'monitoring.coreos.com/v1']
PASSWORD = 'k8s-harness-password'
SECRETS = {'shoal-auth': {'admin-password': PASSWORD,
                          'secret-key': base64.b64encode(b'k' * 32).decode()}}


def helm(*args, check=True):
    return subprocess.run([harness.helm(), *args], capture_output=True, text=True, check=check)


def template(values=None, kube='1.30.0', sets=()):
    args = ['template', 't', str(CHART), '--namespace', 'default', '--kube-version', kube, *CRD_APIS]
    if values:
        args += ['-f', str(values)]
    for s in sets:
        args += ['--set', s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def test_the_chart_lints_strictly():
    r = helm('lint', '--strict', str(CHART), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    for v in CI_VALUES:
        r = helm('lint', '--strict', str(CHART), '-f', str(v), check=False)
        assert r.returncode == 0, (v.name, r.stdout + r.stderr)


def test_the_values_schema_is_fresh():
    subprocess.run(['python3', str(REPO / 'scripts' / 'chart_schema.py'), '--check'], check=True)


@pytest.mark.parametrize('kube', KUBE_VERSIONS)
@pytest.mark.parametrize('values', CI_VALUES, ids=lambda p: p.name)
def test_every_ci_values_file_renders_valid_manifests(values, kube, tmp_path):
    docs = template(values, kube)
    builtin = [d for d in docs if d['kind'] not in CUSTOM]
    out = tmp_path / 'rendered.yaml'
    out.write_text(yaml.safe_dump_all(builtin))
    r = subprocess.run(['kubernetes-validate', '--strict', '--quiet', '-k', kube, str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == '' and 'WARN' not in r.stderr, r.stdout + r.stderr


def test_a_misspelt_value_fails_naming_it():
    r = helm('template', 't', str(CHART), '--set', 'gatway.replicas=3', check=False)
    assert r.returncode != 0 and 'gatway' in r.stderr, r.stderr
    r = helm('template', 't', str(CHART), '--set', 'executor.autoscaling.mode=sometimes', check=False)
    assert r.returncode != 0 and 'mode' in r.stderr, r.stderr
    r = helm('template', 't', str(CHART), '--set', 'executor.services.subPath=true', check=False)
    assert r.returncode != 0 and 'subPath' in r.stderr


def pods_of(docs):
    return [d for d in docs if d['kind'] in ('Deployment', 'StatefulSet')]


@pytest.mark.parametrize('values', CI_VALUES, ids=lambda p: p.name)
def test_the_invariants_hold(values):
    docs = template(values)
    services = [d for d in docs if d['kind'] == 'Service']
    autoscaled = {d['spec']['scaleTargetRef']['name'] for d in docs
                  if d['kind'] in ('ScaledObject', 'HorizontalPodAutoscaler')}
    for w in pods_of(docs):
        name = w['metadata']['name']
        labels = w['spec']['template']['metadata']['labels']
        sel = w['spec']['selector']['matchLabels']
        assert all(labels.get(k) == v for k, v in sel.items()), name
        spec = w['spec']['template']['spec']
        assert spec['securityContext']['runAsNonRoot'] is True
        assert spec['securityContext']['seccompProfile']['type'] == 'RuntimeDefault'
        containers = spec['containers'] + spec.get('initContainers', [])
        for c in containers:
            where = '{}/{}'.format(name, c['name'])
            assert c['resources'].get('requests') and c['resources'].get('limits'), where
            for p in ('livenessProbe', 'readinessProbe', 'startupProbe'):
                assert p in c, (where, p)
            sc = c['securityContext']
            assert sc['readOnlyRootFilesystem'] is True and sc['allowPrivilegeEscalation'] is False, where
            assert sc['capabilities']['drop'] == ['ALL'], where
            for m in c.get('volumeMounts', []):
                assert 'subPath' not in m, (where, m)
        if name in autoscaled:
            assert 'replicas' not in w['spec'], name
        if w['kind'] == 'Deployment' and 'executor' not in name:
            pass
    # Every Service selects some pods.
    for s in services:
        sel = s['spec']['selector']
        assert any(all(w['spec']['template']['metadata']['labels'].get(k) == v for k, v in sel.items())
                   for w in pods_of(docs)), s['metadata']['name']
    # Never a ScaledObject and an HPA for the same Deployment.
    kinds = [d['kind'] for d in docs if d['kind'] in ('ScaledObject', 'HorizontalPodAutoscaler')]
    assert len(kinds) <= 1


def executor_annotations(files, reload):
    sets = ['executor.services.reload=' + reload]
    for name, text in files.items():
        sets.append('executor.services.files.{}={}'.format(name.replace('.', '\\.'), text))
    docs = template(sets=sets)
    ex = next(d for d in docs if d['kind'] == 'Deployment' and d['metadata']['name'].endswith('-executor'))
    return ex['spec']['template']['metadata'].get('annotations', {})


def test_the_checksum_changes_with_the_code_in_restart_mode():
    a = executor_annotations({'a.py': 'x = 1'}, 'restart')['shoal.dev/services-checksum']
    b = executor_annotations({'a.py': 'x = 2'}, 'restart')['shoal.dev/services-checksum']
    assert a != b
    assert 'shoal.dev/services-checksum' not in executor_annotations({'a.py': 'x = 1'}, 'watch')


def test_k8s_manifests_are_what_the_chart_renders():
    for name in ('minimal', 'ha'):
        rendered = helm('template', 'shoal', str(CHART), '--namespace', 'shoal', '--kube-version', '1.30.0',
                        '-f', str(CHART / 'ci' / '{}-values.yaml'.format(name)),
                        '--set', 'tls.existingSecret=shoal-tls').stdout
        kept = (REPO / 'k8s' / name / 'shoal.yaml').read_text()
        assert kept == header(name) + rendered, \
            'k8s/{}/shoal.yaml differs from the chart: run scripts/render-k8s'.format(name)
    for source, kept in (('alerts.yaml', 'shoal-alerts.yaml'), ('dashboard.json', 'shoal-dashboard.json')):
        assert (CHART / 'monitoring' / source).read_text() == (REPO / 'k8s' / 'monitoring' / kept).read_text(), \
            'k8s/monitoring/{} differs from the chart: run scripts/render-k8s'.format(kept)


def test_the_dashboard_and_the_rules_ship_in_the_chart():
    docs = template(CHART / 'ci' / 'ha-values.yaml')
    cm = next(d for d in docs if d['kind'] == 'ConfigMap' and d['metadata']['name'].endswith('-dashboard'))
    assert cm['metadata']['labels']['grafana_dashboard'] == '1'
    assert json.loads(cm['data']['shoal.json']) == json.loads((CHART / 'monitoring' / 'dashboard.json').read_text())
    rule = next(d for d in docs if d['kind'] == 'PrometheusRule')
    assert rule['spec']['groups'] == yaml.safe_load((CHART / 'monitoring' / 'alerts.yaml').read_text())['groups']
    # Alert templates reach Prometheus as written (Helm does not expand them).
    assert '{{ $labels.service }}' in json.dumps(rule['spec'])
    # Tracing reaches every component's environment.
    for pod in pods_of(docs):
        if pod['metadata']['name'].endswith('etcd'):
            continue
        env = {e['name']: e.get('value') for c in pod['spec']['template']['spec']['containers'] for e in c.get('env', [])}
        assert env.get('OTEL_EXPORTER_OTLP_ENDPOINT') == 'http://otel-collector.observability:4317', pod['metadata']['name']
        assert env.get('OTEL_EXPORTER_OTLP_PROTOCOL') == 'grpc'
    # Off by default: neither resource, no tracing.
    plain = template()
    assert not [d for d in plain if d['kind'] == 'PrometheusRule']
    assert 'OTEL_EXPORTER_OTLP_ENDPOINT' not in json.dumps(plain)


def header(name):
    return ('# Rendered from helm/shoal with helm/shoal/ci/{}-values.yaml by scripts/render-k8s;\n'
            '# a test keeps it equal to the chart. Do not edit: change the chart.\n').format(name)


# --- Run what the chart renders ----------------------------------------------------------

V1 = '''from zato.server.service import Service

class Version(Service):
    name = 'k8s.version'

    def handle(self):
        self.response.payload = {'version': %d}
'''

DB = '''from zato.server.service import Service

class Count(Service):
    name = 'k8s.count'

    def handle(self):
        db = self.out.sql.get('k8s-db')
        self.response.payload = {'one': db.execute('select 1 as one').scalar()}
'''


def call(url, method='GET', body=None, auth=True, timeout=5):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header('Content-Type', 'application/json')
    if auth:
        req.add_header('Authorization', 'Basic ' + base64.b64encode(('admin:' + PASSWORD).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b'null')
    except urllib.error.HTTPError as e:
        return e.code, None
    except OSError:
        return None, None


def until(check, patience=60.0, what='the condition'):
    deadline = time.monotonic() + patience
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail('{} did not hold in {} s (last: {!r})'.format(what, patience, last))


def running(objects):
    """The rendered objects run by the harness, for as long as the caller iterates (one
    value: the harness cluster); its logs are printed when something fails."""
    cluster = harness.Cluster(objects, SECRETS)
    try:
        cluster.start()
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


@pytest.fixture
def minimal(tmp_path):
    values = tmp_path / 'v.yaml'
    values.write_text(yaml.safe_dump({'executor': {'services': {'files': {'k8s_version.py': V1 % 1}}}}))
    yield from running(harness.render([CHART / 'ci' / 'minimal-values.yaml', values]))


def test_the_rendered_chart_serves_code_from_its_configmap(minimal):
    c = minimal
    admin = 'http://' + c.address('t-shoal-admin', 'admin')
    http = 'http://' + c.address('t-shoal-gateway', 'http')
    status, _ = call(admin + '/api/v1/channels/version', 'PUT', {
        'name': 'version', 'type': 'http', 'service': 'k8s.version', 'url_path': '/version'})
    assert status == 200
    until(lambda: call(http + '/version', 'POST', {}, auth=False) == (200, {'version': 1}),
          what='version 1 through the gateway')
    # The ConfigMap updated the kubelet's way: the new code answers.
    c.update_configmap('t-shoal-services', {'k8s_version.py': V1 % 2})
    until(lambda: call(http + '/version', 'POST', {}, auth=False) == (200, {'version': 2}),
          what='version 2 after the ConfigMap update')
    # A killed executor "pod" is restarted, and the cluster serves again.
    ex = c.pod('executor')
    old = ex.containers[0].starts
    ex.kill()
    until(lambda: ex.containers[0].starts > old, what='the executor restarted')
    until(lambda: call(http + '/version', 'POST', {}, auth=False) == (200, {'version': 2}),
          what='served again after the restart')
    # Code deployed through the admin API works beside the ConfigMap's: hot, with rollback.
    for n in (1, 2):
        status, _ = call(admin + '/api/v1/deploy', 'POST', {'files': [
            {'name': 'k8s_hot.py', 'source': (V1 % n).replace('k8s.version', 'k8s.hot')}]})
        assert status == 200
        until(lambda: call(admin + '/api/v1/services/k8s.hot/invoke', 'POST', {}) == (200, {'version': n}),
              what='deployed version {}'.format(n))
    assert call(admin + '/api/v1/deploy/rollback', 'POST', {'module': 'k8s_hot'})[0] == 200
    until(lambda: call(admin + '/api/v1/services/k8s.hot/invoke', 'POST', {}) == (200, {'version': 1}),
          what='rolled back')
    # Members advertise their pod's address, not 0.0.0.0.
    status, cluster = call(admin + '/api/v1/cluster')
    addrs = [m['grpc_addr'] for ms in cluster['members'].values() for m in ms]
    assert addrs and all(a.startswith('127.42.0.') for a in addrs), addrs


@pytest.fixture
def fused_chart(tmp_path):
    values = tmp_path / 'v.yaml'
    values.write_text(yaml.safe_dump({'executor': {'replicas': 2, 'autoscaling': {'mode': 'none'},
                                                   'services': {'files': {'k8s_version.py': V1 % 1}}}}))
    yield from running(harness.render([CHART / 'ci' / 'minimal-values.yaml', CHART / 'ci' / 'fused-values.yaml',
                                       values]))


def test_the_fused_chart_serves_channels_from_the_executor_pods(fused_chart):
    c = fused_chart
    admin = 'http://' + c.address('t-shoal-admin', 'admin')
    channels = 'http://' + c.address('t-shoal-channels', 'http')
    status, _ = call(admin + '/api/v1/channels/version', 'PUT', {
        'name': 'version', 'type': 'http', 'service': 'k8s.version', 'url_path': '/version'})
    assert status == 200
    # The channel answers from the executor pods' own process (shoal-fused) ...
    until(lambda: call(channels + '/version', 'POST', {}, auth=False) == (200, {'version': 1}),
          what='version 1 through the fused executors')
    # ... which are gateways and executors at once (the gateway Deployment besides). The
    # pods register on their own: the first answer may come before the second pod has.
    seen = {}

    def fused_members():
        status, cluster = call(admin + '/api/v1/cluster')
        seen['cluster'] = cluster
        if status != 200:
            return False
        execs = {m['pid'] for m in cluster['members'].get('executor', [])}
        gws = {m['pid'] for m in cluster['members'].get('gateway', [])}
        return len(execs) == 2 and execs < gws
    deadline = time.monotonic() + 60
    while not fused_members() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fused_members(), seen['cluster']
    # The ConfigMap's new code serves there too, and a killed fused pod comes back.
    c.update_configmap('t-shoal-services', {'k8s_version.py': V1 % 2})
    until(lambda: call(channels + '/version', 'POST', {}, auth=False) == (200, {'version': 2}),
          what='version 2 after the ConfigMap update')
    ex = c.pod('executor')
    old = ex.containers[0].starts
    ex.kill()
    until(lambda: ex.containers[0].starts > old, what='the fused executor restarted')
    until(lambda: call(channels + '/version', 'POST', {}, auth=False) == (200, {'version': 2}),
          what='served again after the restart')


@pytest.fixture
def sidecars(tmp_path):
    values = tmp_path / 'v.yaml'
    values.write_text(yaml.safe_dump({'auth': {'existingSecret': 'shoal-auth'},
                                      'etcd': {'persistence': {'enabled': False}},
                                      'executor': {'replicas': 1, 'services': {'files': {'k8s_db.py': DB}}}}))
    yield from running(harness.render([CHART / 'ci' / 'sidecars-values.yaml', values]))


def test_sidecar_mode_serves_a_connector_call_over_the_pods_socket(sidecars):
    c = sidecars
    admin = 'http://' + c.address('t-shoal-admin', 'admin')
    assert call(admin + '/api/v1/outgoing/k8s-db', 'PUT', {
        'name': 'k8s-db', 'type': 'sql', 'url': 'sqlite::memory:', 'pool_size': 1})[0] == 200
    until(lambda: call(admin + '/api/v1/services/k8s.count/invoke', 'POST', {}) == (200, {'one': 1}),
          what='a SQL call through the sidecar')
    pod = c.pod('executor')
    status, cluster = call(admin + '/api/v1/cluster')
    conn = cluster['members']['connectors']
    assert len(conn) == 1
    member = conn[0]
    # The sidecar shares the executor's pod: same host, its socket in the pod's in-memory
    # /run/shoal, where the executor finds it.
    assert member['host'] == pod.name
    assert member['uds_path'].startswith(str(pod.volumes['run']))
    assert os.path.exists(member['uds_path'])


def test_the_kustomization_puts_the_code_in_the_configmap():
    kubectl = os.path.join(os.path.dirname(harness.helm()), 'kubectl')
    for name in ('minimal', 'ha'):
        out = subprocess.run([kubectl, 'kustomize', str(REPO / 'k8s' / name)], check=True,
                             capture_output=True, text=True).stdout
        docs = [d for d in yaml.safe_load_all(out) if d]
        cm = [d for d in docs if d['kind'] == 'ConfigMap' and d['metadata']['name'] == 'shoal-services']
        assert len(cm) == 1
        assert cm[0]['data']['hello.py'] == (REPO / 'k8s' / name / 'services' / 'hello.py').read_text()
        # The executors mount that very ConfigMap, whole.
        ex = next(d for d in docs if d['kind'] == 'Deployment' and d['metadata']['name'] == 'shoal-executor')
        vols = {v['name']: v for v in ex['spec']['template']['spec']['volumes']}
        assert vols['services']['configMap']['name'] == 'shoal-services'


def shoal_cli(*args):
    return subprocess.run([str(harness.bin_dir() / 'shoal'), *args], capture_output=True, text=True)


def test_the_cli_writes_a_configmap_the_chart_mounts(tmp_path):
    code = tmp_path / 'services'
    code.mkdir()
    (code / 'k8s_version.py').write_text(V1 % 7)
    (code / 'notes.txt').write_text('not code')
    r = shoal_cli('configmap', str(code), '--name', 'my-code')
    assert r.returncode == 0, r.stderr
    cm = yaml.safe_load(r.stdout)
    assert cm['kind'] == 'ConfigMap' and cm['metadata']['name'] == 'my-code'
    assert cm['data'] == {'k8s_version.py': V1 % 7}
    values = tmp_path / 'v.yaml'
    values.write_text(yaml.safe_dump({'executor': {'services': {'existingConfigMap': 'my-code'}}}))
    objects = harness.render([CHART / 'ci' / 'minimal-values.yaml', values]) + [cm]
    assert not any(o['kind'] == 'ConfigMap' and o['metadata']['name'].endswith('-services') for o in objects)
    for cluster in running(objects):
        admin = 'http://' + cluster.address('t-shoal-admin', 'admin')
        until(lambda: call(admin + '/api/v1/services/k8s.version/invoke', 'POST', {}) == (200, {'version': 7}),
              what='the CLI-made ConfigMap serving')


def test_the_cli_refuses_what_a_configmap_cannot_hold(tmp_path):
    big = tmp_path / 'big'
    big.mkdir()
    (big / 'huge.py').write_text('x = 1\n' + '#' * (1024 * 1024))
    r = shoal_cli('configmap', str(big))
    assert r.returncode == 2 and '1 MiB' in r.stderr and 'shoal deploy' in r.stderr, r.stderr
    nested = tmp_path / 'nested'
    (nested / 'crm').mkdir(parents=True)
    (nested / 'crm' / '__init__.py').write_text('')
    r = shoal_cli('configmap', str(nested))
    assert r.returncode == 2 and 'folder' in r.stderr and 'shoal deploy' in r.stderr, r.stderr
    r = shoal_cli('configmap', str(tmp_path / 'missing'))
    assert r.returncode == 2


CRD_MODELS = os.environ.get('SHOAL_CRD_MODELS', os.path.expanduser('~/.cache/shoal-crd-models'))


def crd_problems(objects):
    r = subprocess.run(['node', str(REPO / 'tests' / 'k8s' / 'crd_check.mjs'), CRD_MODELS],
                       input=json.dumps(objects), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize('values', CI_VALUES, ids=lambda p: p.name)
def test_custom_resources_pass_their_crds_schemas(values):
    objects = [d for d in template(values) if d['kind'] in CUSTOM]
    assert crd_problems(objects) == []


def test_the_crd_check_refuses_unknown_fields_and_wrong_types():
    so = next(d for d in template(CHART / 'ci' / 'keda-values.yaml') if d['kind'] == 'ScaledObject')
    so['spec']['minReplicas'] = 1
    so['spec']['maxReplicaCount'] = 'lots'
    problems = crd_problems([so])
    assert any('minReplicas: unknown field' in p for p in problems), problems
    assert any('maxReplicaCount must be integer' in p for p in problems), problems


def test_a_component_takes_its_own_image_and_chart_files_reach_the_configmap():
    docs = template(sets=['gateway.image.repository=registry.example.com/gw', 'gateway.image.tag=7',
                          'image.registry=registry.example.com', 'executor.services.glob=services/*.py'])
    images = {d['metadata']['name']: [c['image'] for c in d['spec']['template']['spec']['containers']]
              for d in pods_of(docs)}
    assert images['t-shoal-gateway'] == ['registry.example.com/gw:7']
    assert images['t-shoal-executor'] == ['registry.example.com/shoal-executor:0.1.0']
    cm = next(d for d in docs if d['kind'] == 'ConfigMap' and d['metadata']['name'] == 't-shoal-services')
    assert cm['data']['hello.py'] == (CHART / 'services' / 'hello.py').read_text()


def test_the_public_listeners_take_tls_from_a_cert_manager_secret():
    docs = template(sets=['gateway.publicTls.secretName=shoal-public-tls',
                          'gateway.trustedProxies={10.0.0.0/8,192.168.0.0/16}'])
    gw = next(d for d in docs if d['kind'] == 'Deployment' and d['metadata']['name'] == 't-shoal-gateway')
    pod = gw['spec']['template']['spec']
    env = {e['name']: e.get('value') for e in pod['containers'][0]['env']}
    assert env['SHOAL_PUBLIC_TLS_CERT'] == '/etc/shoal/public-tls/tls.crt'
    assert env['SHOAL_PUBLIC_TLS_KEY'] == '/etc/shoal/public-tls/tls.key'
    assert env['SHOAL_TRUSTED_PROXIES'] == '10.0.0.0/8,192.168.0.0/16'
    vol = next(v for v in pod['volumes'] if v['name'] == 'public-tls')
    assert vol['secret']['secretName'] == 'shoal-public-tls'
    mount = next(m for m in pod['containers'][0]['volumeMounts'] if m['name'] == 'public-tls')
    assert mount['mountPath'] == '/etc/shoal/public-tls' and mount['readOnly']
    # Without it the listeners stay plain and nothing is mounted.
    plain = next(d for d in template() if d['kind'] == 'Deployment' and d['metadata']['name'] == 't-shoal-gateway')
    names = [e['name'] for e in plain['spec']['template']['spec']['containers'][0]['env']]
    assert 'SHOAL_PUBLIC_TLS_CERT' not in names
