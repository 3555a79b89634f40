{{- define "ethclient.fullname" -}}
{{- if .Values.fullnameOverride -}}{{ .Values.fullnameOverride }}{{- else -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end -}}
{{- end -}}

{{- /* The P2P port: the value, else each real chart's default. */ -}}
{{- define "ethclient.p2pPort" -}}
{{- if .Values.p2pPort -}}{{ .Values.p2pPort }}
{{- else if has .Chart.Name (list "geth" "nethermind" "besu" "reth") -}}30303
{{- else if eq .Chart.Name "prysm" -}}13000
{{- else -}}9000
{{- end -}}
{{- end -}}
