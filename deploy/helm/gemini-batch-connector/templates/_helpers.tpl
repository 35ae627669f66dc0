{{/* Chart name, truncated to the 63 characters a label value may have. */}}
{{- define "gemini-batch-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified name: the release name, plus the chart name unless it already has it. */}}
{{- define "gemini-batch-connector.fullname" -}}
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

{{- define "gemini-batch-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gemini-batch-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gemini-batch-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gemini-batch-connector.labels" -}}
helm.sh/chart: {{ include "gemini-batch-connector.chart" . }}
{{ include "gemini-batch-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Secret holding the API key: the chart's own, an existing one, or none (""). */}}
{{- define "gemini-batch-connector.secretName" -}}
{{- if .Values.gemini.apiKey.create -}}
{{- if not .Values.gemini.apiKey.value -}}
{{- fail "gemini.apiKey.create is true but gemini.apiKey.value is empty" -}}
{{- end -}}
{{- include "gemini-batch-connector.fullname" . -}}
{{- else -}}
{{- .Values.gemini.apiKey.existingSecret -}}
{{- end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: above the drain budget, so SIGTERM can seal and record open
batches. Computed as drainTimeoutSeconds + terminationGraceMarginSeconds unless set; a value
at or below drainTimeoutSeconds is refused.
*/}}
{{- define "gemini-batch-connector.terminationGracePeriodSeconds" -}}
{{- $drain := float64 .Values.drainTimeoutSeconds -}}
{{- $grace := 0 -}}
{{- if eq (toString .Values.terminationGracePeriodSeconds) "" -}}
{{- $grace = add (int (ceil $drain)) (int .Values.terminationGraceMarginSeconds) -}}
{{- else -}}
{{- $grace = int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- if le (float64 $grace) $drain -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above drainTimeoutSeconds (%v)" (int $grace) $drain) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/* The pod's ServiceAccount: the chart's own (create), or one named (or "default"). */}}
{{- define "gemini-batch-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gemini-batch-connector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
