{{- define "web3signer.fullname" -}}
{{- if .Values.fullnameOverride -}}{{ .Values.fullnameOverride }}{{- else -}}{{ .Release.Name }}-web3signer{{- end -}}
{{- end -}}

{{- /* The real chart's selector labels (its pods, Service and any affinity
       term must use these). */ -}}
{{- define "web3signer.selectorLabels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
