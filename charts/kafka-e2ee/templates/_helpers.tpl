{{/* Names: release-scoped, 63 characters at most. */}}
{{- define "kafka-e2ee.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kafka-e2ee.operator" -}}{{ include "kafka-e2ee.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end -}}
{{- define "kafka-e2ee.webhook" -}}{{ include "kafka-e2ee.fullname" . | trunc 55 | trimSuffix "-" }}-webhook{{- end -}}

{{- define "kafka-e2ee.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kafka-e2ee.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kafka-e2ee.image" -}}
{{ .root.Values.image.registry }}/{{ .name }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end -}}

{{/* The webhook's TLS Secret: cert-manager's Certificate, or the one it manages itself. */}}
{{- define "kafka-e2ee.webhookTlsSecret" -}}{{ include "kafka-e2ee.webhook" . }}-tls{{- end -}}
