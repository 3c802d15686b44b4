{{/* The release's full name (release-chart, or fullnameOverride). */}}
{{- define "shoal.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "shoal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "shoal.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "shoal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shoal
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "shoal.selector" -}}
app.kubernetes.io/name: {{ include "shoal.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A component's image: its own `image` values, else the global naming. */}}
{{- define "shoal.image" -}}
{{- $img := .root.Values.image -}}
{{- $own := (.values | default dict).image | default dict -}}
{{- $tag := toString (default (default .root.Chart.AppVersion $img.tag) $own.tag) -}}
{{- if $own.repository -}}
{{- printf "%s:%s" $own.repository $tag -}}
{{- else -}}
{{- printf "%s/%s-%s:%s" $img.registry $img.repository .component $tag -}}
{{- end -}}
{{- end -}}

{{- define "shoal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "shoal.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "shoal.authSecret" -}}
{{- default (printf "%s-auth" (include "shoal.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "shoal.tlsSecret" -}}
{{- default (printf "%s-tls" (include "shoal.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* The TLS environment of a container of (dict "root" $ "component" name [ "tlsRole"
role ]): its role's certificate (the component's, or tlsRole's: `fused` for a fused
executor) from the mounted Secret, or --plaintext. */}}
{{- define "shoal.tlsEnv" -}}
{{- if .root.Values.tls.enabled }}
- name: SHOAL_TLS_CA
  value: /etc/shoal/tls/ca.crt
- name: SHOAL_TLS_CERT
  value: /etc/shoal/tls/{{ .tlsRole | default .component }}.crt
- name: SHOAL_TLS_KEY
  value: /etc/shoal/tls/{{ .tlsRole | default .component }}.key
{{- if .root.Values.etcd.enabled }}
# The bundled etcd's certificate names its Service.
- name: SHOAL_ETCD_DOMAIN
  value: {{ include "shoal.fullname" .root }}-etcd
{{- end }}
{{- else }}
- name: SHOAL_PLAINTEXT
  value: "true"
{{- end }}
{{- end -}}

{{/* The volume of a component's certificate: only its own key, the CA and its
certificate (dict "root" $ "component" name). */}}
{{- define "shoal.tlsVolume" -}}
{{- if .root.Values.tls.enabled }}
- name: tls-{{ .component }}
  secret:
    secretName: {{ include "shoal.tlsSecret" .root }}
    # 0440: readable by the pod's fsGroup.
    defaultMode: 288
    items:
      - {key: ca.crt, path: ca.crt}
      - {key: {{ .tlsRole | default .component }}.crt, path: {{ .tlsRole | default .component }}.crt}
      - {key: {{ .tlsRole | default .component }}.key, path: {{ .tlsRole | default .component }}.key}
{{- end }}
{{- end -}}

{{/* The config store endpoints, comma-separated. */}}
{{- define "shoal.etcdEndpoints" -}}
{{- if .Values.etcd.enabled -}}
{{- printf "%s://%s-etcd:2379" (ternary "https" "http" .Values.tls.enabled) (include "shoal.fullname" .) -}}
{{- else -}}
{{- required "etcd.external.endpoints is required when etcd.enabled is false" (join "," .Values.etcd.external.endpoints) -}}
{{- end -}}
{{- end -}}

{{- define "shoal.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "shoal.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment every Shoal container has: the store, the cluster, the pod IP it
advertises, JSON logs, and TMPDIR (the Unix sockets live there). */}}
{{- define "shoal.env" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: SHOAL_ADVERTISE_HOST
  value: "$(POD_IP)"
- name: SHOAL_ETCD
  value: {{ include "shoal.etcdEndpoints" . | quote }}
- name: SHOAL_CLUSTER
  value: {{ .Values.cluster | quote }}
- name: SHOAL_LOG_JSON
  value: {{ .Values.logJson | quote }}
- name: TMPDIR
  value: /run/shoal
{{- with .Values.tracing }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .sampleRatio | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.namespace.name={{ $.Release.Namespace }},k8s.pod.ip=$(POD_IP)"
{{- if .headers }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  value: {{ .headers | quote }}
{{- end }}
{{- end }}
{{- if .traceLink }}
- name: SHOAL_TRACE_LINK
  value: {{ .traceLink | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Probes on the ops port. */}}
{{- define "shoal.probes" -}}
startupProbe:
  httpGet: {path: /live, port: ops}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /live, port: ops}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /ready, port: ops}
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}

{{/*
One Shoal container: (dict "root" $ "component" "connectors" "values" .Values.connectors
"port" 11232 "opsPort" 11233 "env" (list ...) "mounts" (list ...)).
*/}}
{{- define "shoal.container" -}}
- name: {{ .component }}
  image: {{ include "shoal.image" . }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["/usr/local/bin/{{ .binary | default (printf "shoal-%s" .component) }}"]
  env:
    {{- include "shoal.env" .root | nindent 4 }}
    - name: SHOAL_LISTEN
      value: "0.0.0.0:{{ .port }}"
    - name: SHOAL_OPS_LISTEN
      value: "0.0.0.0:{{ .opsPort }}"
    {{- include "shoal.tlsEnv" . | nindent 4 }}
    {{- with .env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with .values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - {name: grpc, containerPort: {{ .port }}, protocol: TCP}
    - {name: ops, containerPort: {{ .opsPort }}, protocol: TCP}
    {{- with .extraPorts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- include "shoal.probes" . | nindent 2 }}
  resources:
    {{- toYaml .values.resources | nindent 4 }}
  securityContext:
    {{- include "shoal.securityContext" . | nindent 4 }}
  volumeMounts:
    - {name: run, mountPath: /run/shoal}
    {{- if .root.Values.tls.enabled }}
    - {name: tls-{{ .component }}, mountPath: /etc/shoal/tls, readOnly: true}
    {{- end }}
    {{- with .mounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with .values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* Pod-level fields every component shares: (dict "root" $ "values" .Values.x). */}}
{{- define "shoal.podCommon" -}}
serviceAccountName: {{ include "shoal.serviceAccountName" .root }}
automountServiceAccountToken: false
securityContext:
  {{- include "shoal.podSecurityContext" . | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget when the component's pdb is enabled. */}}
{{- define "shoal.pdb" -}}
{{- if .values.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "shoal.fullname" .root }}-{{ .component }}
  labels:
    {{- include "shoal.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  minAvailable: {{ .values.pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "shoal.selector" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* The internal Service of a component (gRPC and ops ports). */}}
{{- define "shoal.internalService" -}}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "shoal.fullname" .root }}-{{ .component }}
  labels:
    {{- include "shoal.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  type: ClusterIP
  selector:
    {{- include "shoal.selector" . | nindent 4 }}
  ports:
    - {name: grpc, port: {{ .port }}, targetPort: grpc, protocol: TCP}
    - {name: ops, port: {{ .opsPort }}, targetPort: ops, protocol: TCP}
{{- end -}}

{{/* A component's pod labels: every common label and the component. */}}
{{- define "shoal.podLabels" -}}
{{ include "shoal.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}
