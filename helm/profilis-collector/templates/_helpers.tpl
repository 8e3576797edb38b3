{{/*
Names, labels, the pod template shared by the three workload kinds, and the collector
configuration built from values. Everything here is a named template; nothing is rendered.
*/}}

{{- define "profilis-collector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or just <release> when it already holds the chart name. */}}
{{- define "profilis-collector.fullname" -}}
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

{{- define "profilis-collector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "profilis-collector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "profilis-collector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: collector
{{- end -}}

{{- define "profilis-collector.labels" -}}
helm.sh/chart: {{ include "profilis-collector.chart" . }}
{{ include "profilis-collector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "profilis-collector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "profilis-collector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "profilis-collector.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "profilis-collector.tokensSecretName" -}}
{{- default (printf "%s-tokens" (include "profilis-collector.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* True (non-empty) when some tenant has tokens in values, so the chart makes the Secret. */}}
{{- define "profilis-collector.chartTokens" -}}
{{- if not .Values.existingSecret -}}
{{- range .Values.tenants -}}{{- if .tokens -}}yes{{- end -}}{{- end -}}
{{- end -}}
{{- end -}}

{{/* True (non-empty) when a tokens volume is mounted. */}}
{{- define "profilis-collector.hasTokens" -}}
{{- if and .Values.tenants (or .Values.existingSecret (include "profilis-collector.chartTokens" .)) -}}yes{{- end -}}
{{- end -}}

{{/*
A Kubernetes memory quantity (512Mi, 1Gi, 1.5G, 536870912) in bytes. Fails on a suffix the
collector sizing cannot read (m, E, exponents).
*/}}
{{- define "profilis-collector.quantityBytes" -}}
{{- $q := toString . -}}
{{- $units := dict "" 1 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $suffix := trimPrefix $num $q -}}
{{- if or (not $num) (not (hasKey $units $suffix)) -}}
{{- fail (printf "resources.limits.memory %q: use a plain number or a Ki/Mi/Gi/Ti or k/M/G/T suffix" $q) -}}
{{- end -}}
{{- mulf (float64 $num) (get $units $suffix) | floor | int64 -}}
{{- end -}}

{{/* limits.memory_limit: memoryLimitPercent of the container memory limit, in MiB. */}}
{{- define "profilis-collector.memoryLimit" -}}
{{- $mem := dig "limits" "memory" "" (.Values.resources | default dict) -}}
{{- if $mem -}}
{{- $bytes := include "profilis-collector.quantityBytes" $mem | int64 -}}
{{- $mib := div (div (mul $bytes (int64 .Values.memoryLimitPercent)) 100) 1048576 -}}
{{- if lt $mib 16 -}}
{{- fail (printf "resources.limits.memory %s leaves %d MiB for spans; give the collector at least 20Mi" $mem $mib) -}}
{{- end -}}
{{- printf "%dMiB" $mib -}}
{{- else -}}
256MiB
{{- end -}}
{{- end -}}

{{/* The chart's defaults, under values' `config`. */}}
{{- define "profilis-collector.configDefaults" -}}
receivers:
  otlp:
    grpc:
      endpoint: "0.0.0.0:{{ .Values.ports.otlpGrpc }}"
    http:
      endpoint: "0.0.0.0:{{ .Values.ports.otlpHttp }}"
admin:
  endpoint: "0.0.0.0:{{ .Values.ports.admin }}"
limits:
  memory_limit: {{ include "profilis-collector.memoryLimit" . }}
  drain_timeout: 30s
log:
  format: json
exporters:
  prometheus: {}
service:
  exporters: [prometheus]
{{- end -}}

{{/* One tenant of values (camelCase keys) as the collector reads it (snake_case). */}}
{{- define "profilis-collector.tenant" -}}
{{- $t := .tenant -}}
{{- $out := dict "id" (required "every tenant needs an id" $t.id) -}}
{{- range $k, $v := omit $t "id" "tokens" -}}
{{- if kindIs "map" $v -}}
{{- $m := dict -}}
{{- range $k2, $v2 := $v -}}{{- $_ := set $m (snakecase $k2) $v2 -}}{{- end -}}
{{- $_ := set $out (snakecase $k) $m -}}
{{- else -}}
{{- $_ := set $out (snakecase $k) $v -}}
{{- end -}}
{{- end -}}
{{- if or .existingSecret $t.tokens -}}
{{- $_ := set $out "token_file" (printf "/etc/profilis/tokens/%s" $t.id) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
The collector configuration: chart defaults, values' `config` deep-merged over them, the durable
queue added to every otlp exporter that does not configure its own, then tenancy and tenants.
*/}}
{{- define "profilis-collector.config" -}}
{{- $cfg := mustMergeOverwrite (include "profilis-collector.configDefaults" . | fromYaml) (deepCopy (.Values.config | default dict)) -}}
{{- if .Values.durableQueue.enabled -}}
{{- range $name, $exp := $cfg.exporters -}}
{{- if eq (first (splitList "/" $name)) "otlp" -}}
{{- $e := $exp | default dict -}}
{{- $q := dict "enabled" true "directory" "/var/lib/profilis/queue" "max_size" $.Values.durableQueue.maxSize "full" $.Values.durableQueue.full "fsync" $.Values.durableQueue.fsync -}}
{{- $_ := set $e "queue" (mustMergeOverwrite $q ($e.queue | default dict)) -}}
{{- $_ := set $cfg.exporters $name $e -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.tenants -}}
{{- $tenancy := dict "header" .Values.tenancy.header -}}
{{- with .Values.tenancy.resourceAttribute -}}{{- $_ := set $tenancy "resource_attribute" . -}}{{- end -}}
{{- with .Values.tenancy.defaultTenant -}}{{- $_ := set $tenancy "default_tenant" . -}}{{- end -}}
{{- $_ := set $cfg "tenancy" (mustMergeOverwrite $tenancy ($cfg.tenancy | default dict)) -}}
{{- $tenants := list -}}
{{- range .Values.tenants -}}
{{- $tenants = append $tenants (include "profilis-collector.tenant" (dict "tenant" . "existingSecret" $.Values.existingSecret) | fromYaml) -}}
{{- end -}}
{{- $_ := set $cfg "tenants" $tenants -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The pod template of the Deployment, DaemonSet and StatefulSet. */}}
{{- define "profilis-collector.podTemplate" -}}
metadata:
  labels:
    {{- include "profilis-collector.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if include "profilis-collector.chartTokens" . }}
    checksum/tokens: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "profilis-collector.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: collector
      image: {{ include "profilis-collector.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["--config", "/etc/profilis/config/collector.yaml"]
      workingDir: /var/lib/profilis
      ports:
        - name: otlp-grpc
          containerPort: {{ .Values.ports.otlpGrpc }}
          protocol: TCP
        - name: otlp-http
          containerPort: {{ .Values.ports.otlpHttp }}
          protocol: TCP
        - name: admin
          containerPort: {{ .Values.ports.admin }}
          protocol: TCP
      {{- with .Values.extraEnv }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: admin
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: admin
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/profilis/config
          readOnly: true
        - name: data
          mountPath: /var/lib/profilis
        {{- if include "profilis-collector.hasTokens" . }}
        - name: tokens
          mountPath: /etc/profilis/tokens
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "profilis-collector.fullname" . }}
    {{- if include "profilis-collector.hasTokens" . }}
    - name: tokens
      secret:
        secretName: {{ include "profilis-collector.tokensSecretName" . }}
        defaultMode: 0440
    {{- end }}
    {{- if not (and (eq .Values.mode "statefulset") .Values.durableQueue.enabled) }}
    - name: data
      emptyDir:
        sizeLimit: {{ .Values.persistence.emptyDirSizeLimit }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if ne .Values.mode "daemonset" }}
  topologySpreadConstraints:
    {{- if .Values.topologySpreadConstraints }}
    {{- toYaml .Values.topologySpreadConstraints | nindent 4 }}
    {{- else }}
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "profilis-collector.selectorLabels" . | nindent 10 }}
    {{- end }}
  {{- end }}
{{- end -}}
