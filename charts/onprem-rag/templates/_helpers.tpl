{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "onprem-rag.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; the release name alone when it already contains the chart name. */}}
{{- define "onprem-rag.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "onprem-rag.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "onprem-rag.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "onprem-rag.selectorLabels" -}}
app.kubernetes.io/name: {{ include "onprem-rag.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector of one component: the name/instance pair plus app.kubernetes.io/component. */}}
{{- define "onprem-rag.componentSelector" -}}
{{ include "onprem-rag.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "onprem-rag.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "onprem-rag.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "onprem-rag.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* ---- KServe ---- */}}
{{- define "onprem-rag.kserveName" -}}
{{- default (printf "%s-llm" (include "onprem-rag.fullname" .)) .Values.kserve.name | trunc 45 | trimSuffix "-" }}
{{- end }}

{{- define "onprem-rag.kserveChatUrl" -}}
{{- $isvc := include "onprem-rag.kserveName" . }}
{{- printf "%s://%s.%s.svc.cluster.local/openai/v1?model=%s" .Values.kserve.scheme $isvc .Release.Namespace (default $isvc .Values.kserve.modelName) }}
{{- end }}

{{/* ---- config -> RAG_* ---- */}}

{{/*
The effective config tree: .Values.config with what the chart itself decides (the chat URL of
the chart's own InferenceService). Returned as YAML; callers fromYaml it.
*/}}
{{- define "onprem-rag.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- if .Values.kserve.enabled }}
{{- $_ := set $cfg.chat "url" (include "onprem-rag.kserveChatUrl" .) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* A leaf is a secret reference when it is a map with existingSecret: never rendered as a value. */}}
{{- define "onprem-rag.isSecretRef" -}}
{{- if and (kindIs "map" .) (hasKey . "existingSecret") }}true{{ end }}
{{- end }}

{{/*
"KEY: value" lines of the ConfigMap, walking the tree. Args: dict prefix, tree.
Whole floats print as integers: Go would print 1000000.0 as 1e+06, which an int field refuses.
*/}}
{{- define "onprem-rag.configEnv" -}}
{{- $prefix := .prefix }}
{{- range $key, $value := .tree }}
{{- $name := printf "%s_%s" $prefix (upper $key) }}
{{- if include "onprem-rag.isSecretRef" $value }}
{{- else if kindIs "map" $value }}
{{- include "onprem-rag.configEnv" (dict "prefix" (printf "%s_" $name) "tree" $value) }}
{{- else if kindIs "slice" $value }}
{{ $name }}: {{ toJson $value | quote }}
{{- else if kindIs "invalid" $value }}
{{- else if and (kindIs "float64" $value) (eq (floor $value) $value) }}
{{ $name }}: {{ printf "%d" (int64 $value) | quote }}
{{- else }}
{{ $name }}: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* env entries for every secret reference in the tree that names a Secret. Args: dict prefix, tree. */}}
{{- define "onprem-rag.secretEnv" -}}
{{- $prefix := .prefix }}
{{- range $key, $value := .tree }}
{{- $name := printf "%s_%s" $prefix (upper $key) }}
{{- if include "onprem-rag.isSecretRef" $value }}
{{- if $value.existingSecret }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $value.existingSecret }}
      key: {{ $value.key }}
{{- end }}
{{- else if kindIs "map" $value }}
{{- include "onprem-rag.secretEnv" (dict "prefix" (printf "%s_" $name) "tree" $value) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The RAG_* environment of every container that runs `rag`: the ConfigMap plus secret keys.
Args: dict root (the chart context), extraEnvFrom (list, may be empty).
*/}}
{{- define "onprem-rag.ragEnv" -}}
{{- $root := .root -}}
envFrom:
  - configMapRef:
      name: {{ include "onprem-rag.fullname" $root }}-config
  {{- with .extraEnvFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
env:
  # The bundled embedder and its libraries write caches under HOME; the root filesystem is read-only.
  - name: HOME
    value: /tmp
  - name: HF_HUB_OFFLINE
    value: "1"
  {{- with include "onprem-rag.secretEnv" (dict "prefix" "RAG" "tree" $root.Values.config) | trim }}
  {{- . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Annotation that rolls pods when the rendered config changes. */}}
{{- define "onprem-rag.configChecksum" -}}
checksum/config: {{ include "onprem-rag.config" . | sha256sum }}
{{- end }}

{{/* Spread replicas of one component over nodes (soft) or forbid sharing a node (hard). Args: dict root, component. */}}
{{- define "onprem-rag.antiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "onprem-rag.componentSelector" . | fromYaml)) }}
{{- if eq .root.Values.podAntiAffinity "hard" }}
requiredDuringSchedulingIgnoredDuringExecution:
  {{- list $term | toYaml | nindent 2 }}
{{- else }}
preferredDuringSchedulingIgnoredDuringExecution:
  - weight: 100
    podAffinityTerm:
      {{- toYaml $term | nindent 6 }}
{{- end }}
{{- end }}

{{/*
Pod spec of the ingest worker, shared by the CronJob and the sharded Job.
Args: dict root, args (the `rag` arguments), env (extra env entries, may be empty),
stateClaim (PVC for config.data_dir, empty = an emptyDir).
*/}}
{{- define "onprem-rag.ingestPod" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $docs := $v.ingest.documents }}
serviceAccountName: {{ include "onprem-rag.serviceAccountName" $root }}
automountServiceAccountToken: false
# A failed run is retried by the Job's backoff, not by restarting the container in place.
restartPolicy: Never
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
containers:
  - name: ingest
    image: {{ include "onprem-rag.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    command: [rag, ingest]
    args:
      {{- toYaml .args | nindent 6 }}
    {{- include "onprem-rag.ragEnv" (dict "root" $root "extraEnvFrom" $v.ingest.envFrom) | nindent 4 }}
      {{- with .env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- toYaml $v.ingest.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      - {name: data, mountPath: {{ $v.config.data_dir }}}
      {{- if ne $docs.type "none" }}
      # Read-only: the worker must never change the documents it indexes.
      - {name: documents, mountPath: {{ $docs.mountPath }}, readOnly: true}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  - name: data
    {{- if .stateClaim }}
    persistentVolumeClaim:
      claimName: {{ .stateClaim }}
    {{- else }}
    emptyDir: {}
    {{- end }}
  {{- if eq $docs.type "pvc" }}
  - name: documents
    persistentVolumeClaim:
      claimName: {{ required "ingest.documents.existingClaim is required when ingest.documents.type is pvc" $docs.existingClaim }}
      readOnly: true
  {{- else if eq $docs.type "nfs" }}
  - name: documents
    nfs:
      server: {{ required "ingest.documents.nfs.server is required when ingest.documents.type is nfs" $docs.nfs.server }}
      path: {{ required "ingest.documents.nfs.path is required when ingest.documents.type is nfs" $docs.nfs.path }}
      readOnly: true
  {{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
