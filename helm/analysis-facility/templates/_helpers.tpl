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

{{/* The public URL's port: the proxy listens there. */}}
{{- define "af.hubService" -}}{{ include "af.name" . }}-hub{{- end -}}
{{- define "af.proxyApiService" -}}{{ include "af.name" . }}-proxy-api{{- end -}}
{{- define "af.runtimeSecret" -}}{{ include "af.name" . }}-hub-runtime{{- end -}}

{{/* dask-gateway chart's traefik Service, the address notebooks and the hub reach gateways at. */}}
{{- define "af.gatewayUrl" -}}http://traefik-{{ .Release.Name }}-dask-gateway.{{ .Release.Namespace }}{{- end -}}

{{- define "af.image" -}}{{ .name }}:{{ .tag }}{{- end -}}
