{{/* The chart's name, or nameOverride: in resource names and the app.kubernetes.io/name label. */}}
{{- define "kafka-e2ee.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Names: release-scoped (or fullnameOverride), 63 characters at most. */}}
{{- define "kafka-e2ee.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kafka-e2ee.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kafka-e2ee.operator" -}}{{ include "kafka-e2ee.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end -}}
{{- define "kafka-e2ee.webhook" -}}{{ include "kafka-e2ee.fullname" . | trunc 55 | trimSuffix "-" }}-webhook{{- end -}}

{{- define "kafka-e2ee.labels" -}}
app.kubernetes.io/name: {{ include "kafka-e2ee.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kafka-e2ee.selector" -}}
app.kubernetes.io/name: {{ include "kafka-e2ee.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image by digest when image.digests.<component> is set, else by tag. */}}
{{- define "kafka-e2ee.image" -}}
{{- $image := index .root.Values.image .component -}}
{{- $digest := index (.root.Values.image.digests | default dict) .component | default "" -}}
{{- if $digest -}}
{{ .root.Values.image.registry }}/{{ $image }}@{{ $digest }}
{{- else -}}
{{ .root.Values.image.registry }}/{{ $image }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* A component's pod labels: the chart's, its selector, and podLabels. */}}
{{- define "kafka-e2ee.podLabels" -}}
{{ include "kafka-e2ee.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- with .values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The webhook's TLS Secret: cert-manager's Certificate, or the one it manages itself. */}}
{{- define "kafka-e2ee.webhookTlsSecret" -}}{{ include "kafka-e2ee.webhook" . }}-tls{{- end -}}
