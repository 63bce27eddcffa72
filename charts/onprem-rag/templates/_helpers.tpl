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

{{/*
Name of one part of the release: <fullname>-<suffix>, at most .max characters (default 63).
A name that would be longer keeps a prefix of the fullname and a hash of the whole of it, so
two long release names never collide. Kinds with tighter limits pass their own max: CronJob 52
(Job names add 11), StatefulSet 52 (the controller-revision-hash label adds 11), an indexed Job
56 (pod hostnames add -<index>), an InferenceService 45 (KServe adds -predictor and revisions).
Args: dict root, suffix, max.
*/}}
{{- define "onprem-rag.childName" -}}
{{- $full := include "onprem-rag.fullname" .root }}
{{- $max := int (default 63 .max) }}
{{- $name := printf "%s-%s" $full .suffix }}
{{- if gt (len $name) $max }}
{{- $keep := sub $max (add (len .suffix) 8) }}
{{- $name = printf "%s-%s-%s" ($full | trunc (int $keep) | trimSuffix "-") (sha256sum $full | trunc 6) .suffix }}
{{- end }}
{{- $name }}
{{- end }}

{{/* ---- KServe ---- */}}

{{/* The InferenceServices: for each its name suffix and component label. */}}
{{- define "onprem-rag.isvcParts" -}}
llm: {suffix: llm, component: llm}
embedder: {suffix: embed, component: embedder}
reranker: {suffix: rerank, component: reranker}
{{- end }}

{{/* Values block of one InferenceService. Args: dict root, part (llm | embedder | reranker). */}}
{{- define "onprem-rag.isvcValues" -}}
{{- if eq .part "llm" }}{{ toYaml .root.Values.kserve }}{{ else }}{{ toYaml (index .root.Values.kserve .part) }}{{ end }}
{{- end }}

{{/* InferenceService name. Args: dict root, part. */}}
{{- define "onprem-rag.isvcName" -}}
{{- $v := include "onprem-rag.isvcValues" . | fromYaml }}
{{- $part := index (include "onprem-rag.isvcParts" . | fromYaml) .part }}
{{- default (include "onprem-rag.childName" (dict "root" .root "suffix" $part.suffix "max" 45)) $v.name }}
{{- end }}

{{/* Whether the InferenceServices run on Knative (Serverless) rather than as plain Deployments. */}}
{{- define "onprem-rag.kserveKnative" -}}
{{- if has .Values.kserve.deploymentMode (list "Serverless" "Knative") }}true{{ end }}
{{- end }}

{{/*
Host of an InferenceService inside the cluster. Standard/RawDeployment: the predictor's own
Service (<isvc>-predictor, port 80). Knative: the top-level <isvc> name routed by the mesh.
Args: dict root, part.
*/}}
{{- define "onprem-rag.isvcHost" -}}
{{- $name := include "onprem-rag.isvcName" . }}
{{- if include "onprem-rag.kserveKnative" .root }}
{{- printf "%s.%s.svc.cluster.local" $name .root.Release.Namespace }}
{{- else }}
{{- printf "%s-predictor.%s.svc.cluster.local" $name .root.Release.Namespace }}
{{- end }}
{{- end }}

{{/* http or https: the transport part of kserve.scheme. */}}
{{- define "onprem-rag.kserveTransport" -}}
{{- trimPrefix "kserve+" .Values.kserve.scheme }}
{{- end }}

{{/* Model id an InferenceService serves. Args: dict root, part. */}}
{{- define "onprem-rag.isvcModel" -}}
{{- $v := include "onprem-rag.isvcValues" . | fromYaml }}
{{- default (include "onprem-rag.isvcName" .) $v.modelName }}
{{- end }}

{{- define "onprem-rag.kserveChatUrl" -}}
{{- $args := dict "root" . "part" "llm" }}
{{- printf "%s://%s/openai/v1?model=%s" .Values.kserve.scheme (include "onprem-rag.isvcHost" $args) (include "onprem-rag.isvcModel" $args) }}
{{- end }}

{{- define "onprem-rag.kserveEmbedUrl" -}}
{{- $args := dict "root" . "part" "embedder" }}
{{- $host := include "onprem-rag.isvcHost" $args }}
{{- $model := include "onprem-rag.isvcModel" $args }}
{{- if eq .Values.kserve.embedder.runtime "tei" }}
{{- printf "openai+%s://%s/v1?model=%s" (include "onprem-rag.kserveTransport" .) $host $model }}
{{- else }}
{{- printf "%s://%s/openai/v1?model=%s" .Values.kserve.scheme $host $model }}
{{- end }}
{{- end }}

{{- define "onprem-rag.kserveRerankUrl" -}}
{{- $args := dict "root" . "part" "reranker" }}
{{- $host := include "onprem-rag.isvcHost" $args }}
{{- if eq .Values.kserve.reranker.runtime "tei" }}
{{- printf "%s://%s/rerank" (include "onprem-rag.kserveTransport" .) $host }}
{{- else }}
{{- printf "%s://%s/openai/v1/rerank?model=%s" (include "onprem-rag.kserveTransport" .) $host (include "onprem-rag.isvcModel" $args) }}
{{- end }}
{{- end }}

{{/* ---- Chroma, access file, Open WebUI ---- */}}

{{- define "onprem-rag.chromaName" -}}
{{- include "onprem-rag.childName" (dict "root" . "suffix" "chroma" "max" 52) }}
{{- end }}

{{- define "onprem-rag.chromaUrl" -}}
{{- printf "chroma+http://%s.%s.svc.cluster.local:%v" (include "onprem-rag.chromaName" .) .Release.Namespace .Values.chroma.port }}
{{- end }}

{{/* Mount path of the access file when accessFile names a Secret or ConfigMap; empty otherwise. */}}
{{- define "onprem-rag.accessFilePath" -}}
{{- if or .Values.accessFile.existingSecret .Values.accessFile.existingConfigMap }}
{{- printf "/etc/rag/access/%s" .Values.accessFile.key }}
{{- end }}
{{- end }}

{{- define "onprem-rag.webuiName" -}}
{{- include "onprem-rag.childName" (dict "root" . "suffix" "webui") }}
{{- end }}

{{/* The service's URL inside the cluster, with the release namespace, for callers in any namespace. */}}
{{- define "onprem-rag.serviceUrl" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v/v1" (include "onprem-rag.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}

{{/* ---- config -> RAG_* ---- */}}

{{/*
The effective config tree: .Values.config with what the chart itself decides: the URLs of its own
InferenceServices and Chroma server, the access file's mount path, and Open WebUI's JWT secret (one
Secret for both sides). Returned as YAML; callers fromYaml it.
*/}}
{{- define "onprem-rag.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- if .Values.kserve.enabled }}
{{- $_ := set $cfg.chat "url" (include "onprem-rag.kserveChatUrl" .) }}
{{- end }}
{{- if .Values.kserve.embedder.enabled }}
{{- $_ := set $cfg.embed "url" (include "onprem-rag.kserveEmbedUrl" .) }}
{{- end }}
{{- if .Values.kserve.reranker.enabled }}
{{- $_ := set $cfg.retrieval "rerank_url" (include "onprem-rag.kserveRerankUrl" .) }}
{{- end }}
{{- if .Values.chroma.enabled }}
{{- $_ := set $cfg.store "url" (include "onprem-rag.chromaUrl" .) }}
{{- end }}
{{- if and (not $cfg.auth.access_file) (include "onprem-rag.accessFilePath" .) }}
{{- $_ := set $cfg.auth "access_file" (include "onprem-rag.accessFilePath" .) }}
{{- end }}
{{- if and .Values.openWebUI.enabled .Values.openWebUI.forwardUserInfo }}
{{- $_ := set $cfg.auth "openwebui_jwt_secret" (deepCopy .Values.openWebUI.jwtSecret) }}
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
      name: {{ include "onprem-rag.childName" (dict "root" $root "suffix" "config") }}
  {{- with .extraEnvFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
env:
  # The bundled embedder and its libraries write caches under HOME; the root filesystem is read-only.
  - name: HOME
    value: /tmp
  - name: HF_HUB_OFFLINE
    value: "1"
  {{- with include "onprem-rag.secretEnv" (dict "prefix" "RAG" "tree" (include "onprem-rag.config" $root | fromYaml)) | trim }}
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
The documents volume and its mount, from ingest.documents. Args: the chart context.
Prints "mount: ...\nvolume: ..." as YAML (empty for type none); callers fromYaml it.
*/}}
{{- define "onprem-rag.documentsVolume" -}}
{{- $docs := .Values.ingest.documents }}
{{- if ne $docs.type "none" }}
mount: {name: documents, mountPath: {{ $docs.mountPath | quote }}, readOnly: true}
volume:
  name: documents
  {{- if eq $docs.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ required "ingest.documents.existingClaim is required when ingest.documents.type is pvc" $docs.existingClaim | quote }}
    readOnly: true
  {{- else }}
  nfs:
    server: {{ required "ingest.documents.nfs.server is required when ingest.documents.type is nfs" $docs.nfs.server | quote }}
    path: {{ required "ingest.documents.nfs.path is required when ingest.documents.type is nfs" $docs.nfs.path | quote }}
    readOnly: true
  {{- end }}
{{- end }}
{{- end }}

{{/*
ingest.source must be readable inside the pod: an s3:// URI, or a path under the mounted documents
volume. Checked whenever an ingest workload (CronJob, bulk Job, worker) is rendered.
*/}}
{{- define "onprem-rag.checkSource" -}}
{{- $src := required "ingest.source is required" .Values.ingest.source }}
{{- $docs := .Values.ingest.documents }}
{{- if not (hasPrefix "s3://" $src) }}
{{- $path := trimPrefix "file://" $src }}
{{- $root := trimSuffix "/" $docs.mountPath }}
{{- if eq $docs.type "none" }}
{{- fail (printf "ingest.source %s is a path, but no documents volume is mounted: set ingest.documents.type to pvc or nfs (mounted at ingest.documents.mountPath %s), or use an s3:// source" $src $docs.mountPath) }}
{{- else if not (or (eq $path $root) (hasPrefix (printf "%s/" $root) $path)) }}
{{- fail (printf "ingest.source %s is outside the documents volume mounted at ingest.documents.mountPath %s" $src $docs.mountPath) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Pod spec of every pod that runs `rag` besides the service: the ingest CronJob and bulk Job, the
worker Deployment and the eval Job. Args: dict root, name (container), command, args (lists),
env (extra env entries, may be empty), envFrom (extra, may be empty), resources,
stateClaim (PVC for config.data_dir, empty = an emptyDir), documents (bool: mount the documents
volume), restartPolicy, extraMounts / extraVolumes (lists), extra (YAML of more container fields:
ports, probes).
*/}}
{{- define "onprem-rag.ragPod" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $docs := include "onprem-rag.documentsVolume" $root | fromYaml }}
serviceAccountName: {{ include "onprem-rag.serviceAccountName" $root }}
automountServiceAccountToken: false
restartPolicy: {{ .restartPolicy }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
containers:
  - name: {{ .name }}
    image: {{ include "onprem-rag.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    command:
      {{- toYaml .command | nindent 6 }}
    {{- with .args }}
    args:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- include "onprem-rag.ragEnv" (dict "root" $root "extraEnvFrom" .envFrom) | nindent 4 }}
      {{- with .env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with .extra }}
    {{- . | nindent 4 }}
    {{- end }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      - {name: data, mountPath: {{ $v.config.data_dir | quote }}}
      {{- if and .documents $docs }}
      # Read-only: the worker must never change the documents it indexes.
      - {{ toJson $docs.mount }}
      {{- end }}
      {{- with .extraMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  - name: data
    {{- if .stateClaim }}
    persistentVolumeClaim:
      claimName: {{ .stateClaim | quote }}
    {{- else }}
    emptyDir: {}
    {{- end }}
  {{- if and .documents $docs }}
  - {{ toJson $docs.volume }}
  {{- end }}
  {{- with .extraVolumes }}
  {{- toYaml . | nindent 2 }}
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

{{/* The ingest pod of the CronJob and the bulk Job. Args: dict root, args, env, stateClaim. */}}
{{- define "onprem-rag.ingestPod" -}}
{{- include "onprem-rag.ragPod" (dict "root" .root "name" "ingest" "command" (list "rag" "ingest") "args" .args "env" .env "envFrom" .root.Values.ingest.envFrom "resources" .root.Values.ingest.resources "stateClaim" .stateClaim "documents" true "restartPolicy" "Never") }}
{{- end }}

{{/* An Ingress to one Service of the release. Args: dict root, name, component, ingress (values), port. */}}
{{- define "onprem-rag.ingress" -}}
{{- $in := .ingress }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "onprem-rag.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  {{- with $in.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $in.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with $in.tlsSecret }}
  tls:
    - hosts: [{{ $in.host | quote }}]
      secretName: {{ . }}
  {{- end }}
  rules:
    - host: {{ $in.host | quote }}
      http:
        paths:
          - path: {{ $in.path }}
            pathType: Prefix
            backend:
              service:
                name: {{ .name }}
                port:
                  number: {{ .port }}
{{- end }}
