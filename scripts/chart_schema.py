#!/usr/bin/env python3
"""Writes helm/shoal/values.schema.json: every value the chart takes, with
additionalProperties false at every level, so a misspelt key fails `helm install` and
`helm template`, naming it. Run after changing values.yaml; a test keeps the file fresh
(`--check`)."""

import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent.parent / 'helm' / 'shoal' / 'values.schema.json'


def obj(props, required=(), description=None):
    o = {'type': 'object', 'additionalProperties': False, 'properties': props}
    if required:
        o['required'] = list(required)
    if description:
        o['description'] = description
    return o


def s(description=None, **kw):
    d = {'type': 'string', **kw}
    if description:
        d['description'] = description
    return d


def i(minimum=0, maximum=None, description=None):
    d = {'type': 'integer', 'minimum': minimum}
    if maximum is not None:
        d['maximum'] = maximum
    if description:
        d['description'] = description
    return d


B = {'type': 'boolean'}
# Kubernetes objects passed through as they are (their own schemas apply when rendered).
K8S_OBJ = {'type': 'object', 'description': 'A Kubernetes object, passed through'}
K8S_LIST = {'type': 'array', 'items': {'type': 'object'}, 'description': 'Kubernetes objects, passed through'}
QUANTITY = {'anyOf': [{'type': 'string'}, {'type': 'number'}]}
RESOURCES = obj({
    'requests': obj({'cpu': QUANTITY, 'memory': QUANTITY, 'ephemeral-storage': QUANTITY}),
    'limits': obj({'cpu': QUANTITY, 'memory': QUANTITY, 'ephemeral-storage': QUANTITY}),
})
# `--set image.tag=7` gives a number: take it as the tag.
TAG = {'anyOf': [{'type': 'string'}, {'type': 'number'}]}
PDB = obj({'enabled': B, 'minAvailable': i(0)})


def component(extra=None):
    props = {
        'replicas': i(0),
        'resources': RESOURCES,
        'extraEnv': K8S_LIST,
        'extraVolumes': K8S_LIST,
        'extraVolumeMounts': K8S_LIST,
        'affinity': K8S_OBJ,
        'tolerations': K8S_LIST,
        'nodeSelector': {'type': 'object', 'additionalProperties': {'type': 'string'}},
        'topologySpreadConstraints': K8S_LIST,
        'podAnnotations': {'type': 'object', 'additionalProperties': {'type': 'string'}},
        'pdb': PDB,
        'image': obj({'repository': s('Empty: <registry>/<repository>-<component>'), 'tag': TAG}),
    }
    props.update(extra or {})
    return obj(props)


SCHEMA = {
    '$schema': 'http://json-schema.org/draft-07/schema#',
    'title': "Shoal's Helm values",
    **obj({
        'cluster': s('Keys live under /shoal/<cluster>/', pattern='^[a-z0-9][a-z0-9-]{0,62}$'),
        'clusterDisplayName': s(),
        'nameOverride': s(),
        'fullnameOverride': s(),
        'image': obj({
            'registry': s(), 'repository': s(), 'tag': TAG,
            'pullPolicy': s(enum=['Always', 'IfNotPresent', 'Never']),
        }),
        'imagePullSecrets': {'type': 'array', 'items': {'type': 'string'}},
        'auth': obj({'existingSecret': s('A Secret with admin-password and secret-key')}),
        'tls': obj({
            'enabled': B,
            'existingSecret': s('A Secret with ca.crt and <role>.crt/<role>.key per role'),
            'days': i(1),
        }),
        'serviceAccount': obj({'create': B, 'name': s(),
                               'annotations': {'type': 'object', 'additionalProperties': {'type': 'string'}}}),
        'etcd': obj({
            'enabled': B,
            'replicas': {'type': 'integer', 'enum': [1, 3]},
            'image': obj({'repository': s(), 'tag': s(), 'pullPolicy': s(enum=['Always', 'IfNotPresent', 'Never'])}),
            'persistence': obj({'enabled': B, 'size': s(), 'storageClass': s()}),
            'resources': RESOURCES,
            'affinity': K8S_OBJ,
            'tolerations': K8S_LIST,
            'nodeSelector': {'type': 'object', 'additionalProperties': {'type': 'string'}},
            'external': obj({'endpoints': {'type': 'array', 'items': s(pattern='^https?://')}}),
        }),
        'kvdb': obj({'redisUrl': s(pattern='^(|rediss?://.*)$')}),
        'sidecars': obj({'enabled': B}),
        'gateway': component({
            'service': obj({
                'type': s(enum=['ClusterIP', 'NodePort', 'LoadBalancer']),
                'httpPort': i(1, 65535), 'grpcPort': i(1, 65535), 'adminPort': i(1, 65535),
            }),
            'publicTls': obj({'secretName': s('A kubernetes.io/tls Secret (tls.crt, tls.key)')}),
            'trustedProxies': {'type': 'array', 'items': s('A CIDR range')},
            'rateLimitScope': s(enum=['cluster', 'gateway']),
        }),
        'executor': component({
            'workers': i(0),
            'fused': obj({
                'enabled': B,
                'httpPort': i(1, 65535),
                'service': obj({'type': s(enum=['ClusterIP', 'NodePort', 'LoadBalancer']),
                                'port': i(1, 65535)}),
            }),
            'services': obj({
                'files': {'type': 'object', 'additionalProperties': {'type': 'string'},
                          'propertyNames': {'pattern': r'^[A-Za-z_][A-Za-z0-9_]*\.py$'}},
                'glob': s('Chart files to add to the ConfigMap (.Files.Glob)'),
                'existingConfigMap': s(),
                'reload': s(enum=['watch', 'restart']),
            }),
            'autoscaling': obj({
                'mode': s(enum=['none', 'keda', 'hpa']),
                'minReplicas': i(1), 'maxReplicas': i(1), 'targetInFlight': i(1),
                'hpaMetric': s(enum=['cpu', 'inFlight']),
                'cpuUtilization': i(1, 100),
            }),
        }),
        'connectors': component(),
        'scheduler': component(),
        'kvdbProxy': component(),
        'networkPolicy': obj({'enabled': B}),
        'serviceMonitor': obj({'enabled': B, 'interval': s(),
                               'labels': {'type': 'object', 'additionalProperties': {'type': 'string'}}}),
        'logJson': B,
        'monitoring': obj({
            'grafanaDashboard': obj({
                'enabled': B,
                'labels': {'type': 'object', 'additionalProperties': {'type': 'string'}},
                'annotations': {'type': 'object', 'additionalProperties': {'type': 'string'}},
            }),
            'prometheusRule': obj({
                'enabled': B,
                'labels': {'type': 'object', 'additionalProperties': {'type': 'string'}},
            }),
        }),
        'tracing': obj({
            'endpoint': s('OTLP collector address (empty: tracing off)', pattern='^(|https?://.*)$'),
            'protocol': s(enum=['grpc', 'http/protobuf']),
            'sampleRatio': {'type': 'number', 'minimum': 0, 'maximum': 1},
            'headers': s('OTEL_EXPORTER_OTLP_HEADERS (key=value,...)'),
            'traceLink': s('A trace UI address with {trace_id}'),
        }),
    }),
}


def main():
    text = json.dumps(SCHEMA, indent=2) + '\n'
    if '--check' in sys.argv:
        if OUT.read_text() != text:
            sys.exit('{} is stale: run scripts/chart_schema.py'.format(OUT))
        return
    OUT.write_text(text)


if __name__ == '__main__':
    main()
