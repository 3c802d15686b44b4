"""Runs what the Helm chart renders, without Kubernetes: each pod of each rendered
Deployment and StatefulSet becomes a set of local processes (its native sidecars, then its
containers), started from the container's own `command`, `args` and `env`, with the real
Shoal binaries and a real etcd.

What the kubelet would do is done here, as close as one machine allows:

- every pod gets its own loopback address (127.42.0.N): its `status.podIP`, and what a
  container's `0.0.0.0` means inside the pod's network namespace;
- `valueFrom` (`fieldRef` status.podIP / metadata.name, `secretKeyRef`) and `$(VAR)`
  references are filled in Kubernetes' order (a variable sees only those defined before
  it); `HOSTNAME` is the pod's name, as the kubelet sets it;
- Service names (short and `.svc` forms) resolve to a ready pod behind the Service, and a
  StatefulSet pod's stable name `POD.HEADLESS.NS.svc` to that pod;
- volumes are folders: `emptyDir` a temporary folder per pod (shared by its containers),
  `configMap` a folder laid out exactly as the kubelet lays it out (`kubelet_write`),
  `secret` a folder of the Secret's items with the volume's file mode, and a
  container's mount path is replaced by that folder wherever its env and args name it
  (the processes share the machine's filesystem: there is no mount namespace);
- a container that exits is started again (restartPolicy Always) after a short back-off;
- readiness is the container's readinessProbe (HTTP GET on the pod's address).

Not faithful, and said so in docs/kubernetes.md: no network isolation (NetworkPolicy is not
enforced), no resource limits, no image (the machine's binaries and Python), the read-only
root filesystem is not enforced, Service load-balancing is "the first ready pod".
"""

import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent.parent


def bin_dir():
    if os.environ.get('SHOAL_BIN_DIR'):
        return pathlib.Path(os.environ['SHOAL_BIN_DIR'])
    target = os.environ.get('CARGO_TARGET_DIR') or os.path.expanduser('~/.cache/shoal-target')
    return pathlib.Path(target) / 'debug'


def kubelet_write(directory, files):
    """Writes (or updates) a ConfigMap volume at `directory` holding exactly `files`, as the
    kubelet's AtomicWriter does: files in a new timestamped folder, `..data_tmp` pointed at
    it and renamed over `..data`, links for new keys, removed keys' links deleted, the old
    folder deleted."""
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    old = os.readlink(d / '..data') if (d / '..data').is_symlink() else None
    stamp = time.strftime('..%Y_%m_%d_%H_%M_%S', time.gmtime()) + '.{:09d}'.format(time.time_ns() % 10**9)
    (d / stamp).mkdir()
    for name, content in files.items():
        (d / stamp / name).write_text(content)
    tmp = d / '..data_tmp'
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(stamp, tmp)
    os.rename(tmp, d / '..data')
    for name in files:
        link = d / name
        if not link.is_symlink() and not link.exists():
            os.symlink('..data/' + name, link)
    for entry in d.iterdir():
        if not entry.name.startswith('..') and entry.name not in files:
            entry.unlink()
    if old:
        shutil.rmtree(d / old, ignore_errors=True)


def render(values_files=(), sets=(), release='t', namespace='default'):
    """`helm template` of the chart: the rendered objects."""
    cmd = [helm(), 'template', release, str(REPO / 'helm' / 'shoal'), '--namespace', namespace]
    for f in values_files:
        cmd += ['-f', str(f)]
    for s in sets:
        cmd += ['--set', s]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def helm():
    return os.environ.get('SHOAL_HELM', os.path.expanduser('~/.cache/shoal-helm/helm'))


class Container:
    def __init__(self, pod, spec, sidecar):
        self.pod = pod
        self.spec = spec
        self.name = spec['name']
        self.sidecar = sidecar
        self.proc = None
        self.starts = 0
        self.log = open(pod.dir / (self.name + '.log'), 'ab')

    def env(self):
        out = {'HOSTNAME': self.pod.name, 'PATH': os.environ.get('PATH', '/usr/bin:/bin')}
        for e in self.spec.get('env', []):
            if 'value' in e:
                value = expand(str(e['value']), out)
            else:
                value = self.pod.cluster.value_from(self.pod, e['valueFrom'])
            out[e['name']] = self.pod.localise(value, self.spec)
        return out

    def argv(self, env):
        cmd = [expand(c, env) for c in self.spec.get('command', [])]
        args = [expand(a, env) for a in self.spec.get('args', [])]
        argv = [self.pod.localise(a, self.spec) for a in cmd + args]
        exe = argv[0]
        if exe.startswith('/usr/local/bin/shoal-'):
            argv[0] = str(bin_dir() / os.path.basename(exe))
        elif exe == 'etcd':
            argv[0] = shutil.which('etcd') or '/usr/bin/etcd'
        return argv

    def start(self):
        env = self.env()
        self.starts += 1
        self.proc = subprocess.Popen(self.argv(env), env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def probe_ready(self):
        probe = self.spec.get('readinessProbe')
        if not probe or self.proc is None or self.proc.poll() is not None:
            return probe is None and self.proc is not None and self.proc.poll() is None
        get = probe['httpGet']
        port = get['port']
        if not isinstance(port, int):
            port = next(p['containerPort'] for p in self.spec['ports'] if p['name'] == port)
        try:
            with urllib.request.urlopen('http://{}:{}{}'.format(self.pod.ip, port, get['path']), timeout=1) as r:
                return r.status == 200
        except OSError:
            return False


class Pod:
    def __init__(self, cluster, owner, name, ip):
        self.cluster = cluster
        self.owner = owner
        self.name = name
        self.ip = ip
        self.labels = owner['spec']['template']['metadata'].get('labels', {})
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix='pod-{}-'.format(name), dir=cluster.root))
        spec = owner['spec']['template']['spec']
        self.volumes = {}
        for v in spec.get('volumes', []):
            path = self.dir / 'volumes' / v['name']
            path.mkdir(parents=True)
            if 'configMap' in v:
                cm = cluster.objects.get(('ConfigMap', v['configMap']['name']))
                files = (cm or {}).get('data') or {}
                kubelet_write(path, files)
                cluster.configmap_mounts.setdefault(v['configMap']['name'], []).append(path)
            if 'secret' in v:
                cluster.write_secret(path, v['secret'])
            self.volumes[v['name']] = path
        for t in owner['spec'].get('volumeClaimTemplates', []):
            path = self.dir / 'volumes' / t['metadata']['name']
            path.mkdir(parents=True)
            self.volumes[t['metadata']['name']] = path
        self.sidecars = [Container(self, c, True) for c in spec.get('initContainers', [])
                         if c.get('restartPolicy') == 'Always']
        self.containers = [Container(self, c, False) for c in spec['containers']]

    def all(self):
        return self.sidecars + self.containers

    def localise(self, value, container):
        """A container's view of the world, translated to this machine's."""
        for m in sorted(container.get('volumeMounts', []), key=lambda m: -len(m['mountPath'])):
            value = value.replace(m['mountPath'], str(self.volumes[m['name']]))
        value = value.replace('0.0.0.0', self.ip)
        return self.cluster.resolve_names(value)

    def start(self):
        for c in self.sidecars:
            c.start()
        for c in self.containers:
            c.start()

    def ready(self):
        return all(c.probe_ready() for c in self.all())

    def kill(self, container=None):
        for c in self.all():
            if container is None or c.name == container:
                if c.proc and c.proc.poll() is None:
                    os.killpg(c.proc.pid, signal.SIGKILL)


class Cluster:
    """The rendered objects, run. `secrets` adds Secrets the chart expects to exist
    (`auth.existingSecret`)."""

    def __init__(self, objects, secrets=None, namespace='default'):
        self.root = tempfile.mkdtemp(prefix='shoal-k8s-')
        self.namespace = namespace
        self.objects = {(o['kind'], o['metadata']['name']): o for o in objects}
        for name, data in (secrets or {}).items():
            self.objects[('Secret', name)] = {'kind': 'Secret', 'metadata': {'name': name},
                                              'stringData': data}
        self.configmap_mounts = {}
        self.pods = []
        self.stopping = False
        n = 0
        owners = [o for o in objects if o['kind'] in ('StatefulSet', 'Deployment')]
        # etcd (the StatefulSet) first: everything else waits for the store.
        owners.sort(key=lambda o: o['kind'] != 'StatefulSet')
        for o in owners:
            replicas = o['spec'].get('replicas', 1)
            for r in range(replicas):
                n += 1
                name = ('{}-{}'.format(o['metadata']['name'], r) if o['kind'] == 'StatefulSet'
                        else '{}-{:05x}'.format(o['metadata']['name'], n))
                self.pods.append(Pod(self, o, name, '127.42.0.{}'.format(n)))
        self.watcher = threading.Thread(target=self._restart_loop, daemon=True)

    def value_from(self, pod, source):
        if 'fieldRef' in source:
            path = source['fieldRef']['fieldPath']
            return {'status.podIP': pod.ip, 'metadata.name': pod.name,
                    'metadata.namespace': self.namespace}[path]
        if 'secretKeyRef' in source:
            ref = source['secretKeyRef']
            return self.secret_data(ref['name'])[ref['key']].decode()
        raise ValueError('unsupported valueFrom {}'.format(source))

    def secret_data(self, name):
        """A Secret's keys and decoded values."""
        import base64
        s = self.objects[('Secret', name)]
        if 'stringData' in s:
            return {k: v.encode() for k, v in s['stringData'].items()}
        return {k: base64.b64decode(v) for k, v in (s.get('data') or {}).items()}

    def write_secret(self, path, source):
        """A `secret` volume: its items (or every key) as files, with the volume's mode."""
        data = self.secret_data(source['secretName'])
        items = source.get('items') or [{'key': k, 'path': k} for k in data]
        for item in items:
            f = pathlib.Path(path) / item['path']
            f.write_bytes(data[item['key']])
            os.chmod(f, item.get('mode', source.get('defaultMode', 0o644)))

    def service_pods(self, name):
        svc = self.objects.get(('Service', name))
        if not svc:
            return []
        sel = svc['spec'].get('selector', {})
        return [p for p in self.pods if all(p.labels.get(k) == v for k, v in sel.items())]

    def resolve_names(self, value):
        # A StatefulSet pod's stable name: POD.HEADLESS.NS.svc
        def stable(m):
            pod = next((p for p in self.pods if p.name == m.group(1)), None)
            return pod.ip if pod else m.group(0)
        value = re.sub(r'([a-z0-9-]+)\.[a-z0-9-]+\.{}\.svc(?:\.cluster\.local)?'.format(self.namespace),
                       stable, value)

        def service(m):
            name = m.group(1)
            pods = self.service_pods(name)
            return pods[0].ip if pods else m.group(0)
        return re.sub(r'(?<=//)([a-z0-9-]+)(?:\.{}\.svc(?:\.cluster\.local)?)?(?=[:/])'.format(self.namespace),
                      service, value)

    def start(self, patience=90):
        etcd = [p for p in self.pods if p.owner['kind'] == 'StatefulSet']
        for p in etcd:
            p.start()
        self.wait(etcd, patience)
        for p in self.pods:
            if p not in etcd:
                p.start()
        self.watcher.start()
        self.wait(self.pods, patience)

    def wait(self, pods, patience=90):
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if all(p.ready() for p in pods):
                return
            time.sleep(0.2)
        raise AssertionError('pods not ready in {} s: {}\n{}'.format(
            patience, [p.name for p in pods if not p.ready()], self.logs(pods)))

    def logs(self, pods=None):
        out = []
        for p in pods or self.pods:
            for c in p.all():
                c.log.flush()
                text = (p.dir / (c.name + '.log')).read_text(errors='replace')[-1500:]
                out.append('--- {}/{}\n{}'.format(p.name, c.name, text))
        return '\n'.join(out)

    def _restart_loop(self):
        while not self.stopping:
            for p in self.pods:
                for c in p.all():
                    if c.proc is not None and c.proc.poll() is not None and not self.stopping:
                        time.sleep(0.5)  # the kubelet's back-off, shortened
                        if not self.stopping:
                            c.start()
            time.sleep(0.1)

    def pod(self, component, index=0):
        return [p for p in self.pods if p.labels.get('app.kubernetes.io/component') == component][index]

    def address(self, service, port_name):
        svc = self.objects[('Service', service)]
        port = next(p['port'] for p in svc['spec']['ports'] if p['name'] == port_name)
        return '{}:{}'.format(self.service_pods(service)[0].ip, port)

    def update_configmap(self, name, files):
        """A ConfigMap updated: every mount of it is rewritten the kubelet's way."""
        for path in self.configmap_mounts.get(name, []):
            kubelet_write(path, files)

    def stop(self):
        self.stopping = True
        for p in self.pods:
            for c in p.all():
                if c.proc and c.proc.poll() is None:
                    os.killpg(c.proc.pid, signal.SIGTERM)
        for p in self.pods:
            for c in p.all():
                if c.proc:
                    try:
                        c.proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        os.killpg(c.proc.pid, signal.SIGKILL)
                c.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def expand(text, env):
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ escapes, unknown
    references stay as they are."""
    def sub(m):
        if m.group(0) == '$$':
            return '$'
        return env.get(m.group(1), m.group(0))
    return re.sub(r'\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)', sub, text)
