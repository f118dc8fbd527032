{{/* Names and labels (the recommended app.kubernetes.io/* set). */}}
{{- define "oidcproxy.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "oidcproxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "oidcproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oidcproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "oidcproxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "oidcproxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ ternary "sidecar" "auth-proxy" (eq .Values.mode "sidecar") }}
app.kubernetes.io/part-of: oidcproxy
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "oidcproxy.secretName" -}}
{{- .Values.secret.existingSecret | default (include "oidcproxy.fullname" .) -}}
{{- end -}}

{{- define "oidcproxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "oidcproxy.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/*
oidcproxy's flags from .Values.config: --name=value, lists repeated, booleans true/false. The
chart's own flags (address, workers, secret file, sidecar upstream) come first; config cannot repeat
them (values.schema.json leaves them out).
*/}}
{{- define "oidcproxy.args" -}}
- --http-address=0.0.0.0:{{ .Values.service.port }}
- --workers={{ .Values.workers }}
{{- if include "oidcproxy.flatClientSecret" . }}
- --client-secret-file=/etc/oidcproxy/secrets/client-secret
{{- end }}
{{- $config := deepCopy .Values.config }}
{{- if eq .Values.mode "sidecar" }}
{{- if $config.upstream }}
{{- fail "config.upstream: leave it empty in sidecar mode; the chart points oidcproxy at 127.0.0.1:<app.port>" }}
{{- end }}
{{- $_ := set $config "upstream" (list (printf "http://127.0.0.1:%v/" .Values.app.port)) }}
{{- else if not $config.upstream }}
{{- /* auth_request only: oidcproxy proxies nothing, but an upstream is required */}}
{{- $_ := set $config "upstream" (list "http://127.0.0.1:9/") }}
{{- end }}
{{- range $name, $value := $config }}
{{- $flag := printf "--%s" ($name | replace "_" "-") }}
{{- if kindIs "slice" $value }}
{{- range $value }}
- {{ printf "%s=%v" $flag . | quote }}
{{- end }}
{{- else if kindIs "bool" $value }}
- {{ printf "%s=%t" $flag $value | quote }}
{{- else if kindIs "invalid" $value }}
{{- else if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}
- {{ printf "%s=%d" $flag (int64 $value) | quote }}
{{- else if ne (toString $value) "" }}
- {{ printf "%s=%v" $flag $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The flat provider's client secret (a file from the Secret): not with `providers`, whose entries
have their own. */}}
{{- define "oidcproxy.flatClientSecret" -}}
{{- if and .Values.secret.clientSecretKey (not .Values.providers) }}true{{ end -}}
{{- end -}}

{{/* The key of the Secret holding provider entry `index 1`'s client secret; empty for a public client. */}}
{{- define "oidcproxy.providerSecretKey" -}}
{{- $p := index . 1 -}}
{{- if hasKey $p "clientSecretKey" }}{{ $p.clientSecretKey }}{{ else }}provider-{{ $p.id }}-client-secret{{ end -}}
{{- end -}}

{{/*
The `providers` entries as OIDCPROXY_PROVIDERS_<n>_<OPTION> variables (README "Several providers"):
lists comma-joined, booleans true/false; the client secret from the Secret.
*/}}
{{- define "oidcproxy.providersEnv" -}}
{{- range $index, $entry := .Values.providers }}
{{- range $name, $value := omit $entry "clientSecret" "clientSecretKey" }}
{{- $text := "" }}
{{- if kindIs "slice" $value }}
{{- $text = join "," $value }}
{{- else if not (kindIs "invalid" $value) }}
{{- $text = toString $value }}
{{- end }}
{{- if ne $text "" }}
- name: {{ printf "OIDCPROXY_PROVIDERS_%d_%s" $index (upper $name) }}
  value: {{ $text | quote }}
{{- end }}
{{- end }}
{{- with include "oidcproxy.providerSecretKey" (list $ $entry) }}
- name: {{ printf "OIDCPROXY_PROVIDERS_%d_CLIENT_SECRET" $index }}
  valueFrom:
    secretKeyRef:
      name: {{ include "oidcproxy.secretName" $ }}
      key: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Fail closed: one line naming the value and the fix. */}}
{{- define "oidcproxy.validate" -}}
{{- if .Values.providers }}
{{- include "oidcproxy.validateProviders" . }}
{{- else }}
{{- range $name := list "oidc_issuer_url" "client_id" "redirect_url" }}
{{- if not (index $.Values.config $name) }}
{{- fail (printf "config.%s is required: set it in your values (see values.yaml)" $name) }}
{{- end }}
{{- end }}
{{- if and (not .Values.config.email_domain) (not .Values.config.authenticated_emails_file) }}
{{- fail "config.email_domain (or config.authenticated_emails_file) is required: the allowed domains, or [\"*\"] for any verified email" }}
{{- end }}
{{- end }}
{{- if and (not .Values.secret.existingSecret) (not .Values.secret.cookieSecret) }}
{{- fail "secret.cookieSecret is required (32 random bytes, URL-safe base64), or name a Secret in secret.existingSecret" }}
{{- end }}
{{- if and (not .Values.secret.existingSecret) (include "oidcproxy.flatClientSecret" .) (not .Values.secret.clientSecret) }}
{{- fail "secret.clientSecret is required, or set secret.clientSecretKey=\"\" for a public client, or name a Secret in secret.existingSecret" }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") (not .Values.app.image) }}
{{- fail "app.image is required in sidecar mode: the container oidcproxy fronts" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled=true" }}
{{- end }}
{{- if and .Values.redis.enabled (not .Values.redis.connectionUrl) }}
{{- fail "redis.connectionUrl is required with redis.enabled, e.g. redis://redis-master.redis.svc:6379/0" }}
{{- end }}
{{- if and .Values.redis.passwordFromSecret (not .Values.secret.existingSecret) (not .Values.secret.redisPassword) }}
{{- fail "redis.passwordFromSecret needs secret.redisPassword, or a secret.existingSecret holding secret.redisPasswordKey" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.minReplicas) 2) }}
{{- fail "autoscaling.minReplicas must be 2 or more, so that the PodDisruptionBudget lets a node drain" }}
{{- end }}
{{- end -}}

{{/* With `providers`: the flat provider options stay empty; each entry has its rules and its secret. */}}
{{- define "oidcproxy.validateProviders" -}}
{{- range $name := list "oidc_issuer_url" "client_id" "redirect_url" }}
{{- if index $.Values.config $name }}
{{- fail (printf "config.%s: leave it empty with providers; set %s in each entry" $name $name) }}
{{- end }}
{{- end }}
{{- range $index, $entry := .Values.providers }}
{{- if and (not $entry.email_domain) (not $.Values.config.email_domain) (not $.Values.config.authenticated_emails_file) }}
{{- fail (printf "providers[%d].email_domain (or config.email_domain) is required: the allowed domains, or [\"*\"] for any verified email" $index) }}
{{- end }}
{{- if and (not $.Values.secret.existingSecret) (include "oidcproxy.providerSecretKey" (list $ $entry)) (not $entry.clientSecret) }}
{{- fail (printf "providers[%d].clientSecret is required, or set its clientSecretKey=\"\" for a public client, or name a Secret in secret.existingSecret" $index) }}
{{- end }}
{{- end }}
{{- end -}}
