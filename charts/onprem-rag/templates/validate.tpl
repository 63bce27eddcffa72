{{/*
Settings that would deploy but not work: refused at render time with what to set. Included by
configmap.yaml, which every install renders.
*/}}
{{- define "onprem-rag.validate" -}}
{{- $v := .Values }}
{{- $ow := $v.openWebUI }}
{{- if $ow.enabled }}
{{- if and $ow.forwardUserInfo (not $ow.jwtSecret.existingSecret) }}
{{- fail "openWebUI.jwtSecret.existingSecret is required when openWebUI.forwardUserInfo is true: it signs each user's identity for the service (without it every Open WebUI user would be anonymous)" }}
{{- end }}
{{- $cfgJwt := $v.config.auth.openwebui_jwt_secret }}
{{- if and $ow.forwardUserInfo $cfgJwt.existingSecret (or (ne $cfgJwt.existingSecret $ow.jwtSecret.existingSecret) (ne $cfgJwt.key $ow.jwtSecret.key)) }}
{{- fail "config.auth.openwebui_jwt_secret names another Secret than openWebUI.jwtSecret: leave it empty, the chart gives the service openWebUI.jwtSecret" }}
{{- end }}
{{- if not $ow.webuiSecret.existingSecret }}
{{- fail "openWebUI.webuiSecret.existingSecret is required: Open WebUI refuses to start without WEBUI_SECRET_KEY, and a generated one would log everyone out on every restart" }}
{{- end }}
{{- if and (gt (int $ow.replicaCount) 1) (or (not $ow.databaseUrl.existingSecret) (not $ow.redisUrl.existingSecret)) }}
{{- fail "openWebUI.replicaCount > 1 needs openWebUI.databaseUrl and openWebUI.redisUrl: replicas cannot share one SQLite file, and websockets need Redis between them" }}
{{- end }}
{{- if and (gt (int $ow.replicaCount) 1) $ow.persistence.enabled (not (has "ReadWriteMany" $ow.persistence.accessModes)) }}
{{- fail "openWebUI.replicaCount > 1 with openWebUI.persistence needs accessModes [ReadWriteMany] (or persistence.enabled false)" }}
{{- end }}
{{- if $ow.ingress.enabled }}
{{- $_ := required "openWebUI.ingress.host is required when openWebUI.ingress.enabled is true" $ow.ingress.host }}
{{- end }}
{{- end }}
{{- if $v.ingress.enabled }}
{{- $_ := required "ingress.host is required when ingress.enabled is true" $v.ingress.host }}
{{- end }}
{{- if and $v.accessFile.existingSecret $v.accessFile.existingConfigMap }}
{{- fail "accessFile: set existingSecret or existingConfigMap, not both" }}
{{- end }}
{{- $ingest := $v.ingest }}
{{- if and $ingest.cron.enabled $ingest.worker.enabled }}
{{- fail "ingest.cron and ingest.worker both sync one collection and would race on its sync state: enable one" }}
{{- end }}
{{- if or $ingest.cron.enabled $ingest.bulk.enabled $ingest.worker.enabled }}
{{- include "onprem-rag.checkSource" . }}
{{- end }}
{{- if $v.eval.enabled }}
{{- $ds := $v.eval.dataset }}
{{- if eq (empty $ds.configMap) (empty $ds.existingClaim) }}
{{- fail "eval.enabled needs the case file from eval.dataset.configMap or eval.dataset.existingClaim (one of them)" }}
{{- end }}
{{- end }}
{{- end }}
