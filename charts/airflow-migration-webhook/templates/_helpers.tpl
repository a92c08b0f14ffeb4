{{- define "amw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "amw.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "amw.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "amw.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "amw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "amw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "amw.labels" -}}
{{ include "amw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "amw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "amw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "amw.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.secret.name is required with tls.mode=secret" .Values.tls.secret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "amw.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* the Lease that lets one replica at a time write the self-managed TLS Secret */}}
{{- define "amw.certificatesLeaseName" -}}
{{- printf "%s-certs" (include "amw.fullname" .) -}}
{{- end -}}

{{/* the Lease that lets one replica at a time run the reconcile loop */}}
{{- define "amw.reconcileLeaseName" -}}
{{- printf "%s-reconcile" (include "amw.fullname" .) -}}
{{- end -}}

{{- define "amw.dnsNames" -}}
- {{ include "amw.fullname" . }}.{{ .Release.Namespace }}.svc
- {{ include "amw.fullname" . }}.{{ .Release.Namespace }}.svc.cluster.local
{{- end -}}

{{- define "amw.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
