{{/* The release's name for its objects, at most 63 characters. */}}
{{- define "hearth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the pods (the Service's, the InferencePool's). */}}
{{- define "hearth.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hearth.labels" -}}
{{ include "hearth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hearth.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The models preloaded: models.preload, else models.pull. */}}
{{- define "hearth.preload" -}}
{{- if .Values.models.preload -}}
{{ join "," .Values.models.preload }}
{{- else -}}
{{ join "," .Values.models.pull }}
{{- end -}}
{{- end -}}

{{- define "hearth.claimName" -}}
{{ .Values.models.pvc.existingClaim | default (printf "%s-models" (include "hearth.fullname" .)) }}
{{- end -}}

{{- define "hearth.apiKeySecret" -}}
{{ .Values.apiKey.existingSecret | default (printf "%s-api-key" (include "hearth.fullname" .)) }}
{{- end -}}

{{/* The container's resources: .Values.resources, with gpu.count
nvidia.com/gpu in the limits when gpu.enabled (the device plugin's
extended resource: requests default to the limits). */}}
{{- define "hearth.resources" -}}
{{- $res := deepCopy (.Values.resources | default dict) -}}
{{- if .Values.gpu.enabled -}}
{{- $limits := $res.limits | default dict -}}
{{- $_ := set $limits "nvidia.com/gpu" (int .Values.gpu.count) -}}
{{- $_ := set $res "limits" $limits -}}
{{- end -}}
{{- toYaml $res -}}
{{- end -}}

{{/* tolerations: the values', and the GPU nodes' usual taint when
gpu.enabled and gpu.tolerateGPUTaint. */}}
{{- define "hearth.tolerations" -}}
{{- if or .Values.tolerations (and .Values.gpu.enabled .Values.gpu.tolerateGPUTaint) -}}
tolerations:
{{- with .Values.tolerations }}
{{ toYaml . }}
{{- end }}
{{- if and .Values.gpu.enabled .Values.gpu.tolerateGPUTaint }}
- key: nvidia.com/gpu
  operator: Exists
  effect: NoSchedule
{{- end }}
{{- end -}}
{{- end -}}

{{/* A container that runs hearth pull for one model into /models; the
argument is a dict: root (the chart's context), i, model. hearth pull
resumes an interrupted download and checks the sha256 before the file
takes the model's name. */}}
{{- define "hearth.pullContainer" -}}
- name: pull-{{ .i }}
  image: {{ include "hearth.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args: ["pull", {{ .model | quote }}, "--progress", "never"]
  env:
    - name: HEARTH_MODELS
      value: /models
    {{- with .root.Values.models.registry }}
    - name: HEARTH_REGISTRY
      value: {{ . | quote }}
    {{- end }}
  securityContext:
    {{- toYaml .root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: models
      mountPath: /models
    - name: tmp
      mountPath: /tmp
{{- end -}}
