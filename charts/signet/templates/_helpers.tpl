{{/*
Shared helpers of the signet chart: names, labels, the image, the webhook rules and namespace selector,
the generated TLS material (webhook and signer), and the checks that refuse inconsistent values.
*/}}

{{/* The chart name, cut to the 63 characters of a DNS label. */}}
{{- define "signet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource name prefix; cut to 55 characters so that "-webhook" still fits in 63. */}}
{{- define "signet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "signet.webhook.fullname" -}}
{{- printf "%s-webhook" (include "signet.fullname" .) }}
{{- end }}

{{- define "signet.signer.fullname" -}}
{{- printf "%s-signer" (include "signet.fullname" .) }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate (tls.crt, tls.key, ca.crt), whoever issues it. */}}
{{- define "signet.webhook.tlsSecretName" -}}
{{- printf "%s-tls" (include "signet.webhook.fullname" .) }}
{{- end }}

{{- define "signet.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create }}
{{- default (include "signet.webhook.fullname" .) .Values.webhook.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.webhook.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "signet.signer.serviceAccountName" -}}
{{- if .Values.signer.serviceAccount.create }}
{{- default (include "signet.signer.fullname" .) .Values.signer.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.signer.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the chart generates for the signer's HTTPS when signer.tls.secretName is empty. */}}
{{- define "signet.signer.generatedTLSSecretName" -}}
{{- printf "%s-tls" (include "signet.signer.fullname" .) }}
{{- end }}

{{/* The Secret the signer serves HTTPS with: signer.tls.secretName, or the generated one. */}}
{{- define "signet.signer.tlsSecretName" -}}
{{- default (include "signet.signer.generatedTLSSecretName" .) .Values.signer.tls.secretName }}
{{- end }}

{{- define "signet.signer.tokenSecretName" -}}
{{- default (printf "%s-token" (include "signet.signer.fullname" .)) .Values.signer.token.existingSecret }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "signet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "signet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: signet
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component; call with (dict "context" $ "component" "webhook"). */}}
{{- define "signet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signet.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The image reference: the digest pins it when given, otherwise the tag (default: appVersion). */}}
{{- define "signet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The kinds sent to both webhooks: every object that carries a pod template, and the pods/ephemeralcontainers
subresource through which `kubectl debug` adds containers to a running pod. Plain YAML (no template action):
tests/chart.rs parses it.
*/}}
{{- define "signet.webhookRules" -}}
- apiGroups: [""]
  apiVersions: ["v1"]
  operations: ["CREATE", "UPDATE"]
  resources: ["pods", "pods/ephemeralcontainers", "replicationcontrollers", "podtemplates"]
  scope: "Namespaced"
- apiGroups: ["apps"]
  apiVersions: ["v1"]
  operations: ["CREATE", "UPDATE"]
  resources: ["deployments", "replicasets", "statefulsets", "daemonsets"]
  scope: "Namespaced"
- apiGroups: ["batch"]
  apiVersions: ["v1"]
  operations: ["CREATE", "UPDATE"]
  resources: ["jobs", "cronjobs"]
  scope: "Namespaced"
{{- end }}

{{/* Namespaces signet never checks: the release namespace (signet must be able to start itself) and
webhook.exemptNamespaces. Returned as a JSON list. */}}
{{- define "signet.exemptNamespaces" -}}
{{- concat (list .Release.Namespace) (.Values.webhook.exemptNamespaces | default list) | uniq | toJson }}
{{- end }}

{{/* The namespaceSelector of both webhooks. */}}
{{- define "signet.webhookNamespaceSelector" -}}
matchExpressions:
  - key: signet.dev/ignore
    operator: NotIn
    values: ["true"]
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ include "signet.exemptNamespaces" . }}
{{- with .Values.webhook.namespaceSelector.matchExpressions }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
A CA and a serving certificate for a Service, as YAML with base64 fields caCert, tlsCert and tlsKey; call with
(dict "context" $ "secretName" NAME "service" SERVICE "days" DAYS). An existing Secret of that name is reused
(lookup), so upgrades neither rotate the CA nor leave whoever trusts it out of step with the pods'
certificate. Include it ONCE per Secret and render: each call without an existing Secret generates a new CA.
*/}}
{{- define "signet.generatedTLS" -}}
{{- $ctx := .context }}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace .secretName }}
{{- $data := dict }}
{{- if $existing }}
{{- $data = $existing.data | default dict }}
{{- end }}
{{- if and (hasKey $data "ca.crt") (hasKey $data "tls.crt") (hasKey $data "tls.key") }}
caCert: {{ index $data "ca.crt" }}
tlsCert: {{ index $data "tls.crt" }}
tlsKey: {{ index $data "tls.key" }}
{{- else }}
{{- $serviceDNS := printf "%s.%s.svc" .service $ctx.Release.Namespace }}
{{- $altNames := list .service (printf "%s.%s" .service $ctx.Release.Namespace) $serviceDNS (printf "%s.cluster.local" $serviceDNS) }}
{{- $days := int .days }}
{{- $ca := genCA (printf "%s-ca" .service) $days }}
{{- $cert := genSignedCert $serviceDNS nil $altNames $days $ca }}
caCert: {{ $ca.Cert | b64enc }}
tlsCert: {{ $cert.Cert | b64enc }}
tlsKey: {{ $cert.Key | b64enc }}
{{- end }}
{{- end }}

{{/* The webhook's CA and serving certificate when cert-manager is off (see signet.generatedTLS). */}}
{{- define "signet.webhookTLS" -}}
{{- include "signet.generatedTLS" (dict "context" . "secretName" (include "signet.webhook.tlsSecretName" .) "service" (include "signet.webhook.fullname" .) "days" .Values.webhook.tls.validityDays) }}
{{- end }}

{{/* The signer's CA and serving certificate when signer.tls.secretName is empty (see signet.generatedTLS). */}}
{{- define "signet.signerTLS" -}}
{{- include "signet.generatedTLS" (dict "context" . "secretName" (include "signet.signer.generatedTLSSecretName" .) "service" (include "signet.signer.fullname" .) "days" .Values.signer.tls.validityDays) }}
{{- end }}

{{/* The signer's bearer token, base64: the existing Secret's when there is one, else a new random one. */}}
{{- define "signet.signer.token" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "signet.signer.tokenSecretName" .) }}
{{- $data := dict }}
{{- if $existing }}
{{- $data = $existing.data | default dict }}
{{- end }}
{{- if hasKey $data .Values.signer.token.key }}
{{- index $data .Values.signer.token.key }}
{{- else }}
{{- randAlphaNum 48 | b64enc }}
{{- end }}
{{- end }}

{{/* The webhook's deadline in milliseconds; only "<n>s" and "<n>ms" are accepted. */}}
{{- define "signet.webhook.deadlineMillis" -}}
{{- $deadline := toString .Values.webhook.deadline }}
{{- if regexMatch "^[0-9]+ms$" $deadline }}
{{- trimSuffix "ms" $deadline | atoi }}
{{- else if regexMatch "^[0-9]+s$" $deadline }}
{{- mul (trimSuffix "s" $deadline | atoi) 1000 }}
{{- else }}
{{- fail (printf "webhook.deadline %q: write whole seconds (8s) or milliseconds (7500ms)" $deadline) }}
{{- end }}
{{- end }}

{{/* The webhook's shutdown delay in milliseconds; only "<n>s" and "<n>ms" are accepted. */}}
{{- define "signet.webhook.shutdownDelayMillis" -}}
{{- $delay := toString .Values.webhook.shutdownDelay }}
{{- if regexMatch "^[0-9]+ms$" $delay }}
{{- trimSuffix "ms" $delay | atoi }}
{{- else if regexMatch "^[0-9]+s$" $delay }}
{{- mul (trimSuffix "s" $delay | atoi) 1000 }}
{{- else }}
{{- fail (printf "webhook.shutdownDelay %q: write whole seconds (5s) or milliseconds (2500ms)" $delay) }}
{{- end }}
{{- end }}

{{/* Refuses values that would render a broken or insecure installation; renders nothing otherwise. */}}
{{- define "signet.validateValues" -}}
{{- $timeout := int .Values.webhook.timeoutSeconds }}
{{- if or (lt $timeout 1) (gt $timeout 30) }}
{{- fail (printf "webhook.timeoutSeconds %d: the API server accepts 1 to 30" $timeout) }}
{{- end }}
{{- $deadlineMillis := include "signet.webhook.deadlineMillis" . | int }}
{{- if ge $deadlineMillis (mul $timeout 1000) }}
{{- fail (printf "webhook.deadline %s must stay below webhook.timeoutSeconds (%ds), or the API server gives up before signet answers" (toString .Values.webhook.deadline) $timeout) }}
{{- end }}
{{- $delayMillis := include "signet.webhook.shutdownDelayMillis" . | int }}
{{- $graceMillis := mul (int .Values.webhook.terminationGracePeriodSeconds) 1000 }}
{{- if ge (add $delayMillis $deadlineMillis 1000) $graceMillis }}
{{- fail (printf "webhook.shutdownDelay %s + webhook.deadline %s + 1s must stay below webhook.terminationGracePeriodSeconds (%ds), or Kubernetes kills the pod while it drains" (toString .Values.webhook.shutdownDelay) (toString .Values.webhook.deadline) (int .Values.webhook.terminationGracePeriodSeconds)) }}
{{- end }}
{{- if not (has .Values.webhook.failurePolicy (list "Fail" "Ignore")) }}
{{- fail (printf "webhook.failurePolicy %q: use Fail or Ignore" .Values.webhook.failurePolicy) }}
{{- end }}
{{- if not (has .Values.webhook.noMatch (list "allow" "deny")) }}
{{- fail (printf "webhook.noMatch %q: use allow or deny" .Values.webhook.noMatch) }}
{{- end }}
{{- if not (has .Values.log.format (list "json" "text")) }}
{{- fail (printf "log.format %q: use json or text" .Values.log.format) }}
{{- end }}
{{- if and .Values.signer.keys.existingSecret .Values.signer.keys.files }}
{{- fail "signer.keys: set existingSecret or files, not both" }}
{{- end }}
{{- if and .Values.signer.tls.plainHttp .Values.signer.tls.secretName }}
{{- fail "signer.tls: plainHttp serves no certificate; leave secretName empty or turn plainHttp off" }}
{{- end }}
{{- if and .Values.webhook.clientAuth.enabled (not .Values.webhook.clientAuth.caConfigMap) }}
{{- fail "webhook.clientAuth.enabled needs webhook.clientAuth.caConfigMap: the ConfigMap with the CA that issued the API server's client certificate" }}
{{- end }}
{{- end }}
