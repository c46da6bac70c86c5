{{/* Names ------------------------------------------------------------------ */}}

{{- define "streamdist.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-streamdist, or the release name alone when it holds the chart name. */}}
{{- define "streamdist.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "streamdist.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "streamdist.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "streamdist.peeringName" -}}
{{- default (include "streamdist.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------- */}}

{{- define "streamdist.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamdist.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "streamdist.labels" -}}
{{ include "streamdist.selectorLabels" . }}
app.kubernetes.io/part-of: streamdist
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Images ----------------------------------------------------------------- */}}

{{- define "streamdist.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "streamdist.ffmpegImage" -}}
{{- printf "%s:%s" .Values.images.ffmpeg.repository .Values.images.ffmpeg.tag -}}
{{- end -}}

{{- define "streamdist.keySecretName" -}}
{{- printf "%s-key" (include "streamdist.fullname" .) -}}
{{- end -}}

{{- define "streamdist.mediamtxImage" -}}
{{- printf "%s:%s" .Values.images.mediamtx.repository .Values.images.mediamtx.tag -}}
{{- end -}}

{{/* RBAC ---------------------------------------------------------------------
Every verb the operator uses on the namespaced resources it watches or makes, and
nothing else. Rendered into the cluster-wide ClusterRole, or into one Role per watched
namespace when .Values.watchNamespaces is set. charts/streamdist/README.md says why
each verb is there; tests/install checks each one with `kubectl auth can-i` and runs
the operator with exactly these rights. */}}
{{- define "streamdist.workloadRules" -}}
# The API: kopf lists and watches both kinds (indexes and event handlers) ...
- apiGroups: [streamdist.io]
  resources: [streaminputs, streamoutputs]
  verbs: [list, watch]
# ... and the operator writes only their status (merge patch on /status).
- apiGroups: [streamdist.io]
  resources: [streaminputs/status, streamoutputs/status]
  verbs: [patch]
# FFmpeg pods: indexed by label (list, watch), created one per output revision,
# deleted when an output is suspended, changed, or held in back-off too long.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, create, delete]
# MediaMTX Deployments: indexed by label for their readiness (list, watch), and
# created, then server-side applied (patch) once the operator has read (get) it and seen
# that it is its own: a child is never taken over from another owner of the same name.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
# MediaMTX ConfigMaps: created, or read and server-side applied when ours.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
# Ingest Services and SRT-listener Services: as above; a listener output's Service is
# read (is it ours?) and deleted when the output stops.
- apiGroups: [""]
  resources: [services]
  verbs: [get, create, patch, delete]
# Secrets: a user's Secret is read by name only (get: its metadata first, for the
# opt-in label, then its value); each input's credentials Secret is created and
# server-side applied (create, patch). Never listed or watched, never deleted.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch]
# Each router's NetworkPolicy: created, or read and server-side applied when ours.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, create, patch]
# Events on StreamInputs/StreamOutputs (core/v1 Events).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
