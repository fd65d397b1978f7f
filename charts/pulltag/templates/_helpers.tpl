{{/* Labels every object carries (the kustomize manifests carry the first three). */}}
{{- define "pulltag.labels" -}}
app.kubernetes.io/name: pulltag
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: pulltag
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{/* The (immutable) selector: name and component only, as in manifests/. */}}
{{- define "pulltag.selector" -}}
app.kubernetes.io/name: pulltag
app.kubernetes.io/component: {{ . }}
{{- end }}

{{- define "pulltag.podLabels" -}}
app.kubernetes.io/name: pulltag
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: pulltag
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "pulltag.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}
{{- if not (regexMatch "^sha256:[a-f0-9]{64}$" $i.digest) }}{{ fail "image.digest must be sha256:<64 hex digits>" }}{{ end -}}
{{ $i.repository }}@{{ $i.digest }}
{{- else -}}
{{ $i.repository }}:{{ $i.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* True when the chart runs its own store. */}}
{{- define "pulltag.inClusterStore" -}}
{{- if and (eq .Values.mode "replicated") (not .Values.store.url) (not .Values.store.existingSecret) }}true{{ end -}}
{{- end }}

{{- define "pulltag.storePasswordSecret" -}}
{{- .Values.store.inCluster.existingSecret | default "pulltag-store-password" -}}
{{- end }}

{{/* PULLTAG_CONFIG (every `pulltag` command run in the container reads the same file) and the store. */}}
{{- define "pulltag.env" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: PULLTAG_CONFIG
  value: /etc/pulltag/config.yaml
{{- if eq .Values.mode "single-pod" }}
- name: PULLTAG_STORE_URL
  value: sqlite:///var/lib/pulltag/pulltag.db
{{- else if .Values.store.existingSecret }}
- name: PULLTAG_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.store.existingSecret }}
      key: url
{{- else if .Values.store.url }}
- name: PULLTAG_STORE_URL
  value: {{ .Values.store.url | quote }}
{{- else }}
- name: STORE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "pulltag.storePasswordSecret" . }}
      key: password
- name: PULLTAG_STORE_URL
  value: redis://:$(STORE_PASSWORD)@pulltag-redis.$(POD_NAMESPACE).svc:6379/0
{{- end }}
{{- end }}

{{- define "pulltag.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "pulltag.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
{{- end }}

{{- define "pulltag.antiAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "pulltag.selector" . | nindent 12 }}
{{- end }}

{{- define "pulltag.webhookContainer" -}}
- name: webhook
  image: {{ include "pulltag.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - webhook
    - --config
    - /etc/pulltag/config.yaml
    - --bind
    - 0.0.0.0:8443
    - --certfile
    - /etc/pulltag/tls/tls.crt
    - --keyfile
    - /etc/pulltag/tls/tls.key
    - --workers
    - {{ .Values.webhook.workers | quote }}
    - --threads
    - {{ .Values.webhook.threads | quote }}
  env:
    {{- include "pulltag.env" . | nindent 4 }}
  ports:
    - name: https
      containerPort: 8443
      protocol: TCP
  startupProbe:
    httpGet: {path: /healthz, port: https, scheme: HTTPS}
    periodSeconds: 2
    failureThreshold: 30
  livenessProbe:
    httpGet: {path: /healthz, port: https, scheme: HTTPS}
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  readinessProbe:
    httpGet: {path: /readyz, port: https, scheme: HTTPS}
    periodSeconds: 5
    timeoutSeconds: 3
    failureThreshold: 2
  resources:
    {{- toYaml .Values.webhook.resources | nindent 4 }}
  securityContext:
    {{- include "pulltag.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/pulltag/config.yaml
      subPath: config.yaml
      readOnly: true
    - name: tls
      mountPath: /etc/pulltag/tls
      readOnly: true
    {{- if eq .Values.mode "single-pod" }}
    - name: data
      mountPath: /var/lib/pulltag
    - name: webhook-tmp
      mountPath: /tmp
    {{- else }}
    - name: tmp
      mountPath: /tmp
    {{- end }}
{{- end }}

{{- define "pulltag.listenerContainer" -}}
- name: listener
  image: {{ include "pulltag.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - listener
    - --config
    - /etc/pulltag/config.yaml
    - --metrics-bind
    - 0.0.0.0:9090
    {{- if eq .Values.mode "single-pod" }}
    - --no-leader-election
    {{- end }}
    {{- if eq .Values.certificates.mode "selfManaged" }}
    - --manage-webhook-certificates
    {{- end }}
  env:
    {{- include "pulltag.env" . | nindent 4 }}
    - name: PULLTAG_CREDENTIALS_SECRET
      value: {{ .Values.registryCredentials.existingSecret }}
  ports:
    - name: metrics
      containerPort: 9090
      protocol: TCP
  startupProbe:
    httpGet: {path: /healthz, port: metrics, scheme: HTTP}
    periodSeconds: 2
    failureThreshold: 30
  livenessProbe:
    httpGet: {path: /healthz, port: metrics, scheme: HTTP}
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  readinessProbe:
    httpGet: {path: /readyz, port: metrics, scheme: HTTP}
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  resources:
    {{- toYaml .Values.listener.resources | nindent 4 }}
  securityContext:
    {{- include "pulltag.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/pulltag/config.yaml
      subPath: config.yaml
      readOnly: true
    - name: registry-credentials
      mountPath: /etc/pulltag/registry
      readOnly: true
    {{- if eq .Values.mode "single-pod" }}
    - name: data
      mountPath: /var/lib/pulltag
    - name: listener-tmp
      mountPath: /tmp
    - name: kube-api-access
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      readOnly: true
    {{- else }}
    - name: tmp
      mountPath: /tmp
    {{- end }}
{{- end }}

{{- define "pulltag.credentialsVolume" -}}
# optional: without the Secret the listener still starts; `pulltag registry check` names it.
- name: registry-credentials
  secret:
    secretName: {{ .Values.registryCredentials.existingSecret }}
    optional: true
    items:
      - key: .dockerconfigjson
        path: .dockerconfigjson
{{- end }}

{{- define "pulltag.serviceNames" -}}
{{- $ns := .Release.Namespace -}}
{{- list "pulltag-webhook" (printf "pulltag-webhook.%s" $ns) (printf "pulltag-webhook.%s.svc" $ns) (printf "pulltag-webhook.%s.svc.cluster.local" $ns) | toJson -}}
{{- end }}

{{/* The webhook's certificate without cert-manager: the existing Secret's (lookup), else a new CA and a
serving certificate. Memoised in .Values so both WebhookConfigurations and the Secret agree. */}}
{{- define "pulltag.selfSignedTLS" -}}
{{- if not (hasKey .Values "__tls") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace "pulltag-webhook-tls" -}}
{{- if and $existing $existing.data (hasKey $existing.data "ca.crt") (hasKey $existing.data "tls.crt") -}}
{{- $_ := set .Values "__tls" (dict "crt" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key") "ca" (index $existing.data "ca.crt")) -}}
{{- else -}}
{{- $ca := genCA "pulltag-ca" 3650 -}}
{{- $names := include "pulltag.serviceNames" . | fromJsonArray -}}
{{- $cert := genSignedCert (printf "pulltag-webhook.%s.svc" .Release.Namespace) nil $names 825 $ca -}}
{{- $_ := set .Values "__tls" (dict "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc) "ca" ($ca.Cert | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- toYaml (get .Values "__tls") -}}
{{- end }}

{{- define "pulltag.caBundle" -}}
{{- if eq .Values.certificates.mode "chart" -}}
{{- (include "pulltag.selfSignedTLS" . | fromYaml).ca -}}
{{- end -}}
{{- end }}

{{/* Combinations the schema cannot express: stop the install with one line naming the keys. */}}
{{- define "pulltag.validate" -}}
{{- if and (eq .Values.mode "single-pod") (or .Values.store.url .Values.store.existingSecret) -}}
{{- fail "store.url and store.existingSecret apply to mode replicated: single-pod keeps SQLite on its own volume" -}}
{{- end -}}
{{- if and .Values.store.url .Values.store.existingSecret -}}
{{- fail "set one of store.url and store.existingSecret, not both" -}}
{{- end -}}
{{- end }}
