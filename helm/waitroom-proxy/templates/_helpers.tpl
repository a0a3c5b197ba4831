{{/*
Expand the name of the chart.
*/}}
{{- define "waitroom-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS
naming spec). If the release name contains the chart name it is used as the full name.
*/}}
{{- define "waitroom-proxy.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "waitroom-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "waitroom-proxy.labels" -}}
helm.sh/chart: {{ include "waitroom-proxy.chart" . }}
{{ include "waitroom-proxy.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: waitroom-proxy
{{- end }}

{{/*
Selector labels of the proxy pods.
*/}}
{{- define "waitroom-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "waitroom-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end }}

{{/*
Labels and selector labels of a bundled component: pass (dict "ctx" $ "component" "dragonfly").
*/}}
{{- define "waitroom-proxy.componentLabels" -}}
helm.sh/chart: {{ include "waitroom-proxy.chart" .ctx }}
{{ include "waitroom-proxy.componentSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: waitroom-proxy
{{- end }}

{{- define "waitroom-proxy.componentSelectorLabels" -}}
app.kubernetes.io/name: {{ include "waitroom-proxy.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Create the name of the service account to use.
*/}}
{{- define "waitroom-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "waitroom-proxy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference of the proxy.
*/}}
{{- define "waitroom-proxy.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Name of the Secret holding the signing secret and the admin token, and whether the chart makes it.
*/}}
{{- define "waitroom-proxy.secretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- include "waitroom-proxy.fullname" . }}
{{- end }}
{{- end }}

{{/*
Fails the render, with one clear message, when the values cannot make a working release.
Called from the Deployment so every install path goes through it.
*/}}
{{- define "waitroom-proxy.validate" -}}
{{- if not .Values.config }}
{{- if not .Values.rooms }}
{{- fail "rooms: at least one room is required (or set `config` to a complete waitroom.toml)" }}
{{- end }}
{{- end }}
{{- if .Values.forwardAuth.enabled }}
{{- if .Values.upstream }}
{{- fail "forwardAuth.enabled: leave upstream empty (ingress-nginx proxies the site itself)" }}
{{- end }}
{{- if not (and .Values.ingress.enabled .Values.forwardAuth.siteService.name) }}
{{- fail "forwardAuth.enabled needs ingress.enabled and forwardAuth.siteService.name (the Service of your site)" }}
{{- end }}
{{- if not .Values.trustedProxies }}
{{- fail "forwardAuth.enabled needs trustedProxies: the ingress controller pods' CIDR (auth requests from anyone else get 403)" }}
{{- end }}
{{- if gt (int .Values.forwardAuth.cacheSeconds) 0 }}
{{- range .Values.rooms }}
{{- if and .bypass (or .bypass.methods .bypass.cidrs) }}
{{- fail (printf "forwardAuth.cacheSeconds must be 0: room %s bypasses by method or address, which the ingress-nginx auth cache key does not hold" .name) }}
{{- end }}
{{- end }}
{{- end }}
{{- else if not .Values.upstream }}
{{- fail "upstream is required: set upstream to the origin base URL, e.g. --set upstream=http://shop.default.svc:8080" }}
{{- end }}
{{- if not .Values.auth.existingSecret }}
{{- $secret := include "waitroom-proxy.requiredSecret" . }}
{{- if lt (len $secret) 32 }}
{{- fail "auth.secret must be at least 32 characters (e.g. openssl rand -hex 32)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.auth.adminToken) }}
{{- fail "metrics.serviceMonitor.enabled needs auth.adminToken (or auth.existingSecret): /metrics requires the admin bearer token" }}
{{- end }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if not (or .Values.autoscaling.targetCPUUtilizationPercentage .Values.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled needs autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage" }}
{{- end }}
{{- end }}
{{- if and (not (include "waitroom-proxy.hasStore" .)) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "more than one replica needs a shared store: set store.url, store.existingSecret or dragonfly.enabled=true (or replicaCount=1 for the in-process store)" }}
{{- end }}
{{- if and (not (include "waitroom-proxy.hasStore" .)) (gt (int .Values.workers) 1) }}
{{- fail "workers > 1 needs a shared store: set store.url, store.existingSecret or dragonfly.enabled=true (or workers=1)" }}
{{- end }}
{{- if and .Values.nats.enabled (not .Values.nats.url) (gt (int (.Values.nats.streamReplicas | default 1)) 1) }}
{{- fail "nats.streamReplicas > 1 needs a NATS cluster: the bundled NATS (nats.enabled) is a single server; set nats.url to a cluster's URLs, or nats.streamReplicas=1" }}
{{- end }}
{{- end }}

{{/*
auth.secret, or a failed render with a message saying what to set.
*/}}
{{- define "waitroom-proxy.requiredSecret" -}}
{{- required "auth.secret is required: set auth.secret (e.g. --set auth.secret=$(openssl rand -hex 32)) or auth.existingSecret to a Secret holding it. The chart generates no secret, so every replica and every upgrade keeps the same one." .Values.auth.secret }}
{{- end }}

{{/*
"true" when the proxy is given a store URL.
*/}}
{{- define "waitroom-proxy.hasStore" -}}
{{- if or .Values.store.existingSecret .Values.store.url .Values.dragonfly.enabled }}true{{- end }}
{{- end }}

{{/*
Store URL when the chart knows it in plain text (not from store.existingSecret).
*/}}
{{- define "waitroom-proxy.storeUrl" -}}
{{- if .Values.store.url }}
{{- .Values.store.url }}
{{- else if .Values.dragonfly.enabled }}
{{- printf "redis://%s-dragonfly:6379/0" (include "waitroom-proxy.fullname" .) }}
{{- end }}
{{- end }}

{{/*
NATS URL, if any.
*/}}
{{- define "waitroom-proxy.natsUrl" -}}
{{- if .Values.nats.url }}
{{- .Values.nats.url }}
{{- else if .Values.nats.enabled }}
{{- printf "nats://%s-nats:4222" (include "waitroom-proxy.fullname" .) }}
{{- end }}
{{- end }}

{{/*
TOML rendering of values. Strings, numbers, booleans and arrays of them are written as JSON,
which is valid TOML for these types; maps become sub-tables. Keys are sorted (Go template map
order), so the output is stable.
*/}}
{{- define "waitroom-proxy.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/*
Writes the scalar keys of a table, then its sub-tables. Pass (dict "path" "rooms" "table" $room).
*/}}
{{- define "waitroom-proxy.tomlBody" -}}
{{- $path := .path }}
{{- range $k, $v := .table }}
{{- if not (kindIs "map" $v) }}
{{- if and (kindIs "slice" $v) (gt (len $v) 0) (kindIs "map" (first $v)) }}
{{- fail (printf "%s.%s: arrays of tables are not supported in values; use `config` for a raw waitroom.toml" $path $k) }}
{{- end }}
{{- if not (kindIs "invalid" $v) }}
{{ include "waitroom-proxy.tomlKey" $k }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{- end }}
{{- range $k, $v := .table }}
{{- if kindIs "map" $v }}
{{- $sub := printf "%s.%s" $path (include "waitroom-proxy.tomlKey" $k) }}

[{{ $sub }}]
{{- include "waitroom-proxy.tomlBody" (dict "path" $sub "table" $v) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
waitroom.toml: the raw `config` string, or `[server]` and `[[rooms]]` rendered from values.
*/}}
{{- define "waitroom-proxy.configToml" -}}
{{- if .Values.config }}
{{- .Values.config }}
{{- else -}}
# Rendered by the waitroom-proxy Helm chart from `server` and `rooms` (DESIGN §3).
[server]
{{- include "waitroom-proxy.tomlBody" (dict "path" "server" "table" .Values.server) }}
{{- range .Values.rooms }}

[[rooms]]
name = {{ required "rooms[].name is required" .name | toJson }}
{{- include "waitroom-proxy.tomlBody" (dict "path" "rooms" "table" (omit . "name")) }}
{{- end }}
{{- end }}
{{- end }}
