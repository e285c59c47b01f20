{{/* Names and labels shared by every object of the chart. */}}
{{- define "af.name" -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}

{{- define "af.labels" -}}
app.kubernetes.io/name: analysis-facility
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "af.selector" -}}
app.kubernetes.io/name: analysis-facility
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* zero-to-jupyterhub's Service names: dask-gateway finds the hub API through the `hub` Service
     ($HUB_SERVICE_HOST) when it runs in the same namespace. One release per namespace. */}}
{{- define "af.hubService" -}}hub{{- end -}}
{{- define "af.proxyApiService" -}}proxy-api{{- end -}}
{{- define "af.proxyPublicService" -}}proxy-public{{- end -}}
{{- define "af.runtimeSecret" -}}{{ include "af.name" . }}-hub-runtime{{- end -}}

{{/* dask-gateway chart's traefik Service, the address notebooks and the hub reach gateways at. */}}
{{- define "af.gatewayUrl" -}}http://traefik-{{ .Release.Name }}-dask-gateway.{{ .Release.Namespace }}{{- end -}}
{{/* dask-gateway chart's Service of the gateway's own API (Prometheus scrapes /api/metrics there). */}}
{{- define "af.gatewayApiService" -}}api-{{ .Release.Name }}-dask-gateway{{- end -}}
{{/* The facility.yaml backend the chart's dask-gateway serves: daskGatewayBackend, else the first kubernetes one. */}}
{{- define "af.gatewayBackend" -}}
{{- $kube := list -}}
{{- range .Values.facility.backends -}}{{- if eq .kind "kubernetes" -}}{{- $kube = append $kube .name -}}{{- end -}}{{- end -}}
{{- .Values.daskGatewayBackend | default (first $kube) -}}
{{- end -}}

{{- define "af.image" -}}{{ .name }}:{{ .tag }}{{- end -}}

{{/* facility.yaml's metrics settings over their defaults (files/metrics/, from monitoring/chart_files.py), as JSON. */}}
{{- define "af.metricsSettings" -}}
{{- $settings := .Files.Get "files/metrics/defaults.json" | fromJson -}}
{{- range $key, $value := (.Values.facility.metrics | default dict) -}}{{- $_ := set $settings $key $value -}}{{- end -}}
{{- toJson $settings -}}
{{- end -}}

{{- define "af.metricsService" -}}{{ include "af.name" . }}-metrics{{- end -}}
{{- define "af.prometheusTokens" -}}{{ include "af.name" . }}-prometheus-tokens{{- end -}}

{{/* A token kept from the last release (the value given) or, when there is none, a new random hex one. */}}
{{- define "af.keptToken" -}}
{{- . | default (sha256sum (randAlphaNum 64)) -}}
{{- end -}}
